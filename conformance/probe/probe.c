/*
 * keel-conformance probe: a tiny static program that runs inside a container (or as a hook) and
 * reports, as one JSON document, what it sees: ids and groups, umask, cwd, argv, env, hostname,
 * namespaces, capabilities, no_new_privs, seccomp mode, rlimits, oom_score_adj, mounts, cgroups,
 * id maps, open file descriptors, terminal state, personality, scheduling policy, nice and I/O
 * priority, plus whatever files, paths, writes,
 * opens, mkdirs and mknods the suite asks for.
 *
 * Built by the suite with `gcc -static -O2`; the rootfs of a test bundle holds nothing but this file.
 *
 * usage: probe [OPTIONS]
 *   --out FILE          write the report to FILE (atomically) instead of stdout
 *   --no-report         do not produce a report
 *   --stdin             read stdin to EOF and include it in the report ("stdin")
 *   --read PATH         include up to 4 KiB of PATH ("files")
 *   --stat PATH         include lstat(2) of PATH ("stats")
 *   --list DIR          include the entries of DIR ("lists")
 *   --write PATH        try open(O_WRONLY|O_CREAT)+write on PATH ("writes")
 *   --open PATH         try open(O_RDONLY|O_NONBLOCK) on PATH ("opens")
 *   --mkdir PATH        try mkdir(PATH) ("mkdirs"); used to observe seccomp filters
 *   --mknod PATH T MAJ MIN   try mknod (T = c|b) ("mknods")
 *   --event NAME --log FILE  append one JSON line {event, pid, ns, argv, env, stdin...} to FILE
 *                       (used by hooks and to order the container process among hook runs);
 *                       stdin is read to EOF when --event is given
 *   --signals FILE      after reporting, wait for signals; append each one's number to FILE and
 *                       exit 0 after SIGTERM or SIGINT
 *   --sleep SECONDS     sleep before exiting
 *   --exit CODE         exit with CODE (default 0)
 *   --console-server SOCK --console-out FILE
 *                       host-side helper: accept one connection on unix socket SOCK, receive a
 *                       pseudoterminal master over SCM_RIGHTS and copy what it reads to FILE
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------- a growable output buffer with JSON helpers ---------- */

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

static void buf_grow(buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) _exit(120);
  b->data = p;
  b->cap = cap;
}

static void buf_raw(buf_t *b, const char *s, size_t n) {
  buf_grow(b, n);
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

static void buf_printf(buf_t *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof tmp) n = sizeof tmp - 1;
  buf_raw(b, tmp, (size_t)n);
}

static void json_str_n(buf_t *b, const char *s, size_t n) {
  buf_raw(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"') buf_raw(b, "\\\"", 2);
    else if (c == '\\') buf_raw(b, "\\\\", 2);
    else if (c == '\n') buf_raw(b, "\\n", 2);
    else if (c == '\t') buf_raw(b, "\\t", 2);
    else if (c == '\r') buf_raw(b, "\\r", 2);
    else if (c < 0x20 || c >= 0x7f) buf_printf(b, "\\u%04x", c); /* bytes, not code points: lossless for the reader */
    else buf_raw(b, (const char *)&c, 1);
  }
  buf_raw(b, "\"", 1);
}

static void json_str(buf_t *b, const char *s) {
  if (!s) buf_raw(b, "null", 4);
  else json_str_n(b, s, strlen(s));
}

static void json_key(buf_t *b, int *first, const char *k) {
  if (!*first) buf_raw(b, ",", 1);
  *first = 0;
  json_str(b, k);
  buf_raw(b, ":", 1);
}

static const char *errname(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case EACCES: return "EACCES";
  case EROFS: return "EROFS";
  case EEXIST: return "EEXIST";
  case ENOSPC: return "ENOSPC";
  case ENOTDIR: return "ENOTDIR";
  case EISDIR: return "EISDIR";
  case EINVAL: return "EINVAL";
  case ENOSYS: return "ENOSYS";
  case EBUSY: return "EBUSY";
  case ENXIO: return "ENXIO";
  case ENODEV: return "ENODEV";
  case EIO: return "EIO";
  case EBADF: return "EBADF";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  default: return "E?";
  }
}

static void json_err(buf_t *b, int e) {
  buf_printf(b, "{\"ok\":false,\"errno\":%d,\"error\":\"%s\"}", e, errname(e));
}

/* Reads up to max bytes of a file; returns length or -errno. */
static ssize_t read_file(const char *path, char *out, size_t max) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -errno;
  size_t got = 0;
  while (got < max) {
    ssize_t n = read(fd, out + got, max - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return got ? (ssize_t)got : -e;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  close(fd);
  return (ssize_t)got;
}

static void json_file_or_null(buf_t *b, const char *path, size_t max) {
  char *tmp = malloc(max);
  if (!tmp) _exit(120);
  ssize_t n = read_file(path, tmp, max);
  if (n < 0) buf_raw(b, "null", 4);
  else json_str_n(b, tmp, (size_t)n);
  free(tmp);
}

static char *read_all_fd(int fd, size_t *len) {
  size_t cap = 4096, got = 0;
  char *p = malloc(cap);
  if (!p) _exit(120);
  for (;;) {
    if (got == cap) {
      cap *= 2;
      p = realloc(p, cap);
      if (!p) _exit(120);
    }
    ssize_t n = read(fd, p + got, cap - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  *len = got;
  return p;
}

/* ---------- options ---------- */

#define MAXREQ 64
typedef struct {
  const char *path;
  char type;
  unsigned maj, min;
} mknod_req;

static struct {
  const char *out, *event, *log, *signals, *console_server, *console_out;
  int no_report, want_stdin, exit_code, sleep_s;
  const char *reads[MAXREQ], *stats[MAXREQ], *lists[MAXREQ], *writes[MAXREQ], *opens[MAXREQ], *mkdirs[MAXREQ];
  int nreads, nstats, nlists, nwrites, nopens, nmkdirs;
  mknod_req mknods[MAXREQ];
  int nmknods;
} opt;

static void usage(const char *msg) {
  fprintf(stderr, "probe: %s\n", msg);
  exit(125);
}

static void parse(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage("missing value"), (char *)0))
#define PUSH(arr, n) do { if (n >= MAXREQ) usage("too many requests"); arr[n++] = NEXT(); } while (0)
    if (!strcmp(a, "--out")) opt.out = NEXT();
    else if (!strcmp(a, "--no-report")) opt.no_report = 1;
    else if (!strcmp(a, "--stdin")) opt.want_stdin = 1;
    else if (!strcmp(a, "--read")) PUSH(opt.reads, opt.nreads);
    else if (!strcmp(a, "--stat")) PUSH(opt.stats, opt.nstats);
    else if (!strcmp(a, "--list")) PUSH(opt.lists, opt.nlists);
    else if (!strcmp(a, "--write")) PUSH(opt.writes, opt.nwrites);
    else if (!strcmp(a, "--open")) PUSH(opt.opens, opt.nopens);
    else if (!strcmp(a, "--mkdir")) PUSH(opt.mkdirs, opt.nmkdirs);
    else if (!strcmp(a, "--mknod")) {
      if (opt.nmknods >= MAXREQ) usage("too many requests");
      mknod_req *r = &opt.mknods[opt.nmknods++];
      r->path = NEXT();
      r->type = NEXT()[0];
      r->maj = (unsigned)atoi(NEXT());
      r->min = (unsigned)atoi(NEXT());
    } else if (!strcmp(a, "--event")) opt.event = NEXT();
    else if (!strcmp(a, "--log")) opt.log = NEXT();
    else if (!strcmp(a, "--signals")) opt.signals = NEXT();
    else if (!strcmp(a, "--sleep")) opt.sleep_s = atoi(NEXT());
    else if (!strcmp(a, "--exit")) opt.exit_code = atoi(NEXT());
    else if (!strcmp(a, "--console-server")) opt.console_server = NEXT();
    else if (!strcmp(a, "--console-out")) opt.console_out = NEXT();
    else usage("unknown option");
#undef NEXT
#undef PUSH
  }
}

/* ---------- report sections ---------- */

static const char *ns_names[] = {"cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children", "user", "uts"};

static void add_ns(buf_t *b) {
  buf_raw(b, "{", 1);
  int first = 1;
  for (size_t i = 0; i < sizeof ns_names / sizeof *ns_names; i++) {
    char path[64], target[128];
    snprintf(path, sizeof path, "/proc/self/ns/%s", ns_names[i]);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) continue;
    target[n] = 0;
    json_key(b, &first, ns_names[i]);
    json_str(b, target);
  }
  buf_raw(b, "}", 1);
}

static void add_status(buf_t *b) {
  static const char *keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Umask", "NSpid"};
  char text[8192];
  ssize_t n = read_file("/proc/self/status", text, sizeof text - 1);
  buf_raw(b, "{", 1);
  if (n > 0) {
    text[n] = 0;
    int first = 1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
      char *colon = strchr(line, ':');
      if (!colon) continue;
      *colon = 0;
      for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        if (strcmp(line, keys[i])) continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        json_key(b, &first, line);
        json_str(b, v);
      }
    }
  }
  buf_raw(b, "}", 1);
}

static const struct { const char *name; int res; } rlimits[] = {
  {"RLIMIT_AS", RLIMIT_AS}, {"RLIMIT_CORE", RLIMIT_CORE}, {"RLIMIT_CPU", RLIMIT_CPU},
  {"RLIMIT_DATA", RLIMIT_DATA}, {"RLIMIT_FSIZE", RLIMIT_FSIZE}, {"RLIMIT_LOCKS", RLIMIT_LOCKS},
  {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
  {"RLIMIT_NOFILE", RLIMIT_NOFILE}, {"RLIMIT_NPROC", RLIMIT_NPROC}, {"RLIMIT_RSS", RLIMIT_RSS},
  {"RLIMIT_RTPRIO", RLIMIT_RTPRIO}, {"RLIMIT_RTTIME", RLIMIT_RTTIME}, {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
  {"RLIMIT_STACK", RLIMIT_STACK},
};

static void json_rlim(buf_t *b, rlim_t v) {
  if (v == RLIM_INFINITY) buf_raw(b, "-1", 2); /* the suite reads -1 as unlimited */
  else buf_printf(b, "%llu", (unsigned long long)v);
}

static void add_rlimits(buf_t *b) {
  buf_raw(b, "{", 1);
  int first = 1;
  for (size_t i = 0; i < sizeof rlimits / sizeof *rlimits; i++) {
    struct rlimit rl;
    if (getrlimit(rlimits[i].res, &rl) != 0) continue;
    json_key(b, &first, rlimits[i].name);
    buf_raw(b, "[", 1);
    json_rlim(b, rl.rlim_cur);
    buf_raw(b, ",", 1);
    json_rlim(b, rl.rlim_max);
    buf_raw(b, "]", 1);
  }
  buf_raw(b, "}", 1);
}

static void add_fds(buf_t *b) {
  buf_raw(b, "[", 1);
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    int self = dirfd(d), first = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      int fd = atoi(e->d_name);
      if (fd == self) continue;
      char path[64], target[PATH_MAX];
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      ssize_t n = readlink(path, target, sizeof target - 1);
      target[n < 0 ? 0 : n] = 0;
      if (!first) buf_raw(b, ",", 1);
      first = 0;
      buf_printf(b, "{\"fd\":%d,\"target\":", fd);
      json_str(b, target);
      buf_raw(b, "}", 1);
    }
    closedir(d);
  }
  buf_raw(b, "]", 1);
}

static void add_tty(buf_t *b) {
  buf_raw(b, "{", 1);
  for (int fd = 0; fd < 3; fd++) {
    buf_printf(b, "%s\"%d\":{\"isatty\":%s", fd ? "," : "", fd, isatty(fd) ? "true" : "false");
    struct stat st;
    if (fstat(fd, &st) == 0) buf_printf(b, ",\"rdev\":[%u,%u]", major(st.st_rdev), minor(st.st_rdev));
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0) buf_printf(b, ",\"rows\":%u,\"cols\":%u", ws.ws_row, ws.ws_col);
    buf_raw(b, "}", 1);
  }
  buf_raw(b, "}", 1);
}

static void add_stat(buf_t *b, const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    json_err(b, errno);
    return;
  }
  char t = '?';
  if (S_ISREG(st.st_mode)) t = 'f';
  else if (S_ISDIR(st.st_mode)) t = 'd';
  else if (S_ISLNK(st.st_mode)) t = 'l';
  else if (S_ISCHR(st.st_mode)) t = 'c';
  else if (S_ISBLK(st.st_mode)) t = 'b';
  else if (S_ISFIFO(st.st_mode)) t = 'p';
  else if (S_ISSOCK(st.st_mode)) t = 's';
  buf_printf(b, "{\"ok\":true,\"type\":\"%c\",\"mode\":%u,\"uid\":%u,\"gid\":%u,\"size\":%lld,\"major\":%u,\"minor\":%u",
             t, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid, (long long)st.st_size,
             major(st.st_rdev), minor(st.st_rdev));
  if (t == 'l') {
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n >= 0) {
      target[n] = 0;
      buf_raw(b, ",\"link\":", 8);
      json_str(b, target);
    }
  }
  buf_raw(b, "}", 1);
}

static void add_list(buf_t *b, const char *path) {
  DIR *d = opendir(path);
  if (!d) {
    json_err(b, errno);
    return;
  }
  buf_raw(b, "{\"ok\":true,\"entries\":[", 22);
  int first = 1;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (!first) buf_raw(b, ",", 1);
    first = 0;
    json_str(b, e->d_name);
  }
  closedir(d);
  buf_raw(b, "]}", 2);
}

static void add_result(buf_t *b, int rc) {
  if (rc == 0) buf_raw(b, "{\"ok\":true}", 11);
  else json_err(b, rc);
}

static int try_write(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
  if (fd < 0) return errno;
  int rc = 0;
  if (write(fd, "x", 1) != 1) rc = errno;
  close(fd);
  return rc;
}

static int try_open(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

typedef void (*section_fn)(buf_t *, const char *);

static void add_map(buf_t *b, const char *key, const char **paths, int n, section_fn fn) {
  buf_raw(b, ",", 1);
  json_str(b, key);
  buf_raw(b, ":{", 2);
  for (int i = 0; i < n; i++) {
    if (i) buf_raw(b, ",", 1);
    json_str(b, paths[i]);
    buf_raw(b, ":", 1);
    fn(b, paths[i]);
  }
  buf_raw(b, "}", 1);
}

static void sec_read(buf_t *b, const char *p) {
  char tmp[4096];
  ssize_t n = read_file(p, tmp, sizeof tmp);
  if (n < 0) {
    json_err(b, (int)-n);
    return;
  }
  buf_raw(b, "{\"ok\":true,\"data\":", 18);
  json_str_n(b, tmp, (size_t)n);
  buf_raw(b, "}", 1);
}
static void sec_write(buf_t *b, const char *p) { add_result(b, try_write(p)); }
static void sec_open(buf_t *b, const char *p) { add_result(b, try_open(p)); }
static void sec_mkdir(buf_t *b, const char *p) { add_result(b, mkdir(p, 0755) == 0 ? 0 : errno); }

static void add_strv(buf_t *b, char **v, int n) {
  buf_raw(b, "[", 1);
  for (int i = 0; n < 0 ? v[i] != NULL : i < n; i++) {
    if (i) buf_raw(b, ",", 1);
    json_str(b, v[i]);
  }
  buf_raw(b, "]", 1);
}

static void build_report(buf_t *b, int argc, char **argv, const char *in, size_t inlen, int has_in) {
  buf_raw(b, "{\"probe\":1", 10);
  buf_raw(b, ",\"argv\":", 8);
  add_strv(b, argv, argc);
  buf_raw(b, ",\"env\":", 7);
  add_strv(b, environ, -1);
  char cwd[PATH_MAX];
  buf_raw(b, ",\"cwd\":", 7);
  json_str(b, getcwd(cwd, sizeof cwd) ? cwd : NULL);
  buf_printf(b, ",\"pid\":%d,\"ppid\":%d", (int)getpid(), (int)getppid());
  uid_t r, e, s;
  gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  buf_printf(b, ",\"uid\":[%u,%u,%u],\"gid\":[%u,%u,%u]", r, e, s, gr, ge, gs);
  gid_t groups[256];
  int ng = getgroups(256, groups);
  buf_raw(b, ",\"groups\":[", 11);
  for (int i = 0; i < ng; i++) buf_printf(b, "%s%u", i ? "," : "", groups[i]);
  buf_raw(b, "]", 1);
  mode_t um = umask(0);
  umask(um);
  buf_printf(b, ",\"umask\":%u", (unsigned)um);
  struct utsname u;
  if (uname(&u) == 0) {
    buf_raw(b, ",\"hostname\":", 12);
    json_str(b, u.nodename);
    buf_raw(b, ",\"domainname\":", 14);
    json_str(b, u.domainname);
    buf_raw(b, ",\"machine\":", 11);
    json_str(b, u.machine);
  }
  buf_printf(b, ",\"personality\":%d", personality(0xffffffff));
  /* scheduling: policy (sched_getscheduler), nice (getpriority), I/O priority (ioprio_get of this process) */
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  buf_printf(b, ",\"sched\":{\"policy\":%d,\"nice\":%d,\"ioprio\":%ld}", sched_getscheduler(0), errno ? 0 : nice, syscall(SYS_ioprio_get, 1, 0));
  buf_raw(b, ",\"ns\":", 6);
  add_ns(b);
  buf_raw(b, ",\"status\":", 10);
  add_status(b);
  buf_raw(b, ",\"rlimits\":", 11);
  add_rlimits(b);
  buf_raw(b, ",\"oomScoreAdj\":", 15);
  json_file_or_null(b, "/proc/self/oom_score_adj", 64);
  buf_raw(b, ",\"mountinfo\":", 13);
  json_file_or_null(b, "/proc/self/mountinfo", 1 << 20);
  buf_raw(b, ",\"cgroup\":", 10);
  json_file_or_null(b, "/proc/self/cgroup", 1 << 16);
  buf_raw(b, ",\"uidMap\":", 10);
  json_file_or_null(b, "/proc/self/uid_map", 4096);
  buf_raw(b, ",\"gidMap\":", 10);
  json_file_or_null(b, "/proc/self/gid_map", 4096);
  buf_raw(b, ",\"fds\":", 7);
  add_fds(b);
  buf_raw(b, ",\"tty\":", 7);
  add_tty(b);
  if (has_in) {
    buf_raw(b, ",\"stdin\":", 9);
    json_str_n(b, in, inlen);
  }
  buf_raw(b, ",\"mknods\":{", 11);
  for (int i = 0; i < opt.nmknods; i++) {
    mknod_req *m = &opt.mknods[i];
    mode_t kind = m->type == 'b' ? S_IFBLK : S_IFCHR;
    if (i) buf_raw(b, ",", 1);
    json_str(b, m->path);
    buf_raw(b, ":", 1);
    add_result(b, mknod(m->path, kind | 0600, makedev(m->maj, m->min)) == 0 ? 0 : errno);
  }
  buf_raw(b, "}", 1);
  add_map(b, "files", opt.reads, opt.nreads, sec_read);
  add_map(b, "stats", opt.stats, opt.nstats, add_stat);
  add_map(b, "lists", opt.lists, opt.nlists, add_list);
  add_map(b, "writes", opt.writes, opt.nwrites, sec_write);
  add_map(b, "opens", opt.opens, opt.nopens, sec_open);
  add_map(b, "mkdirs", opt.mkdirs, opt.nmkdirs, sec_mkdir);
  buf_raw(b, "}\n", 2);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int write_atomic(const char *path, const char *data, size_t n) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  if (write_all(fd, data, n) != 0) {
    close(fd);
    return -1;
  }
  close(fd);
  return rename(tmp, path);
}

/* ---------- modes ---------- */

static void log_event(int argc, char **argv) {
  size_t inlen = 0;
  char *in = read_all_fd(0, &inlen);
  buf_t b = {0};
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  buf_raw(&b, "{\"event\":", 9);
  json_str(&b, opt.event);
  buf_printf(&b, ",\"pid\":%d,\"time\":%lld", (int)getpid(), (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
  buf_raw(&b, ",\"ns\":", 6);
  add_ns(&b);
  buf_raw(&b, ",\"argv\":", 8);
  add_strv(&b, argv, argc);
  buf_raw(&b, ",\"env\":", 7);
  add_strv(&b, environ, -1);
  char cwd[PATH_MAX];
  buf_raw(&b, ",\"cwd\":", 7);
  json_str(&b, getcwd(cwd, sizeof cwd) ? cwd : NULL);
  buf_raw(&b, ",\"stdin\":", 9);
  json_str_n(&b, in, inlen);
  /* A hook's stdin is the container state: record what its pid is running right now, so the
     suite can tell whether the user program had been executed when the hook ran. */
  char *pidp = memmem(in, inlen, "\"pid\":", 6);
  if (pidp) {
    long pid = strtol(pidp + 6, NULL, 10);
    char path[64], cmd[4096];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    ssize_t n = pid > 0 ? read_file(path, cmd, sizeof cmd) : -1;
    for (ssize_t i = 0; i < n; i++)
      if (cmd[i] == 0) cmd[i] = ' ';
    buf_printf(&b, ",\"statePid\":%ld,\"statePidCmdline\":", pid);
    if (n < 0) buf_raw(&b, "null", 4);
    else json_str_n(&b, cmd, (size_t)n);
  }
  buf_raw(&b, "}\n", 2);
  int fd = open(opt.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0 || write_all(fd, b.data, b.len) != 0) {
    perror("probe: event log");
    exit(124);
  }
  close(fd);
  free(in);
  free(b.data);
}

static volatile sig_atomic_t last_signal;
static void on_signal(int sig) { last_signal = sig; }

static void wait_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  sigprocmask(SIG_BLOCK, &all, NULL); /* no signal is lost between the check and the wait */
  for (int s = 1; s < 65; s++) {
    if (s == SIGKILL || s == SIGSTOP || s == SIGCHLD) continue;
    sigaction(s, &sa, NULL);
  }
  /* tell the suite it can send signals now */
  char ready[PATH_MAX];
  snprintf(ready, sizeof ready, "%s.ready", opt.signals);
  write_atomic(ready, "ready\n", 6);
  for (;;) {
    sigsuspend(&none);
    int s = last_signal;
    if (!s) continue;
    last_signal = 0;
    char line[16];
    int n = snprintf(line, sizeof line, "%d\n", s);
    int fd = open(opt.signals, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd >= 0) {
      write_all(fd, line, (size_t)n);
      close(fd);
    }
    if (s == SIGTERM || s == SIGINT) return;
  }
}

/* Receives the pty master the runtime sends over --console-socket and copies it to a file. */
static int console_server(void) {
  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(opt.console_server) >= sizeof sa.sun_path) usage("socket path too long");
  strcpy(sa.sun_path, opt.console_server);
  unlink(opt.console_server);
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 1) != 0) {
    perror("probe: console socket");
    return 1;
  }
  /* tell the suite the socket is ready */
  char ready[PATH_MAX];
  snprintf(ready, sizeof ready, "%s.ready", opt.console_out);
  write_atomic(ready, "ready\n", 6);
  int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) {
    perror("probe: accept");
    return 1;
  }
  char data[4096];
  char ctl[CMSG_SPACE(sizeof(int) * 4)];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
  ssize_t n = recvmsg(c, &mh, MSG_CMSG_CLOEXEC);
  int master = -1;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); n >= 0 && cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) memcpy(&master, CMSG_DATA(cm), sizeof(int));
  }
  close(c);
  close(ls);
  if (master < 0) {
    fprintf(stderr, "probe: no file descriptor received on the console socket\n");
    return 1;
  }
  snprintf(ready, sizeof ready, "%s.received", opt.console_out);
  write_atomic(ready, "received\n", 9);
  int out = open(opt.console_out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) return 1;
  char chunk[4096];
  for (;;) {
    ssize_t r = read(master, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break; /* EIO once the last slave fd is closed */
    write_all(out, chunk, (size_t)r);
  }
  close(out);
  return 0;
}

int main(int argc, char **argv) {
  parse(argc, argv);
  if (opt.console_server) {
    if (!opt.console_out) usage("--console-server needs --console-out");
    return console_server();
  }
  if (opt.event) {
    if (!opt.log) usage("--event needs --log");
    log_event(argc, argv);
  } else if (opt.log) {
    usage("--log needs --event");
  }
  if (!opt.no_report) {
    size_t inlen = 0;
    char *in = opt.want_stdin ? read_all_fd(0, &inlen) : NULL;
    buf_t b = {0};
    build_report(&b, argc, argv, in, inlen, opt.want_stdin);
    if (opt.out) {
      if (write_atomic(opt.out, b.data, b.len) != 0) {
        perror("probe: --out");
        return 123;
      }
    } else if (write_all(1, b.data, b.len) != 0) {
      return 123;
    }
    free(b.data);
    free(in);
  }
  if (opt.signals) wait_signals();
  if (opt.sleep_s > 0) {
    struct timespec ts = {.tv_sec = opt.sleep_s};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  }
  return opt.exit_code;
}
