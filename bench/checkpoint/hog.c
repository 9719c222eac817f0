/* The bench's container process: touches MIB mebibytes (argv[1], default 256) of private memory,
 * one write a page, says "ready" on stdout and then sleeps; it never changes its memory again. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
  size_t len = mib << 20;
  volatile unsigned char *p = malloc(len);
  if (!p) return 1;
  for (size_t i = 0; i < len; i += 4096) p[i] = (unsigned char)(i >> 12) | 1;
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}
