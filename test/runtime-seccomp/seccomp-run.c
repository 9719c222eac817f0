/*
 * Test scaffolding for test/runtime-seccomp: installs a seccomp BPF program produced by keel and
 * runs something under it. Built with gcc into a temporary directory by the tests.
 *
 *   seccomp-run load   PROG FLAGS CMD [ARGS...]        install (with no_new_privs), then execv CMD
 *   seccomp-run notify PROG FLAGS ERRNO CMD [ARGS...]  install with a listener; run CMD in a child and
 *                                                      answer each notification with -ERRNO
 *   seccomp-run mkdir  PATH MODE                       mkdir(PATH, MODE); prints "errno=N"
 *   seccomp-run call   NR [A0 .. A5]                   syscall(NR, ...); prints "ret=R errno=N"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int install(const char *path, unsigned long flags) {
  static unsigned char buf[65536];
  int fd = open(path, O_RDONLY);
  if (fd < 0) { perror("open program"); exit(120); }
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n <= 0 || n % 8 != 0) { fprintf(stderr, "bad program size %zd\n", n); exit(121); }
  struct sock_fprog prog = { .len = (unsigned short)(n / 8), .filter = (struct sock_filter *)buf };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("no_new_privs"); exit(122); }
  long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (rc < 0) { fprintf(stderr, "seccomp: %s\n", strerror(errno)); exit(123); }
  return (int)rc;
}

int main(int argc, char **argv) {
  if (argc >= 5 && strcmp(argv[1], "load") == 0) {
    install(argv[2], strtoul(argv[3], NULL, 0));
    execv(argv[4], argv + 4);
    perror("execv");
    return 124;
  }
  if (argc >= 6 && strcmp(argv[1], "notify") == 0) {
    int answer = atoi(argv[4]);
    int listener = install(argv[2], strtoul(argv[3], NULL, 0));
    if (listener <= 0) { fprintf(stderr, "no listener fd\n"); return 125; }
    pid_t child = fork();
    if (child == 0) {
      close(listener);
      execv(argv[5], argv + 5);
      _exit(124);
    }
    struct seccomp_notif_sizes sizes;
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) { perror("notif sizes"); return 126; }
    struct seccomp_notif *req = calloc(1, sizes.seccomp_notif);
    struct seccomp_notif_resp *resp = calloc(1, sizes.seccomp_notif_resp);
    int handled = 0;
    for (;;) {
      int status;
      if (waitpid(child, &status, WNOHANG) == child) {
        fprintf(stderr, "notifications=%d\n", handled);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      struct pollfd p = { .fd = listener, .events = POLLIN };
      if (poll(&p, 1, 50) <= 0) continue;
      memset(req, 0, sizes.seccomp_notif);
      if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) != 0) continue;
      memset(resp, 0, sizes.seccomp_notif_resp);
      resp->id = req->id;
      resp->error = -answer;
      ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp);
      handled++;
    }
  }
  if (argc == 4 && strcmp(argv[1], "mkdir") == 0) {
    int rc = mkdir(argv[2], (mode_t)strtoul(argv[3], NULL, 8));
    printf("errno=%d\n", rc == 0 ? 0 : errno);
    if (rc == 0) rmdir(argv[2]);
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "call") == 0) {
    unsigned long a[6] = {0};
    for (int i = 0; i < 6 && 3 + i < argc; i++) a[i] = strtoull(argv[3 + i], NULL, 0);
    errno = 0;
    long rc = syscall(strtol(argv[2], NULL, 0), a[0], a[1], a[2], a[3], a[4], a[5]);
    printf("ret=%ld errno=%d\n", rc, rc < 0 ? errno : 0);
    return 0;
  }
  fprintf(stderr, "usage: see the comment at the top of seccomp-run.c\n");
  return 2;
}
