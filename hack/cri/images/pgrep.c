/* pgrep [-f] PATTERN: the pids whose name (or, with -f, full command line) matches the extended
 * regular expression PATTERN, one a line; exit 1 when none does. Debian's busybox has no pgrep
 * applet, and critest runs `pgrep sleep` in its containers. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int readfile(const char *path, char *buf, size_t len) {
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0) return -1;
	buf[n] = 0;
	return (int)n;
}

int main(int argc, char **argv) {
	int full = 0, i = 1, found = 0;
	if (i < argc && strcmp(argv[i], "-f") == 0) { full = 1; i++; }
	if (i != argc - 1) { fprintf(stderr, "usage: pgrep [-f] PATTERN\n"); return 2; }
	regex_t re;
	if (regcomp(&re, argv[i], REG_EXTENDED | REG_NOSUB) != 0) { fprintf(stderr, "pgrep: bad pattern\n"); return 2; }
	DIR *d = opendir("/proc");
	if (!d) { perror("pgrep: /proc"); return 3; }
	struct dirent *e;
	char path[64], buf[4096];
	while ((e = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)e->d_name[0])) continue;
		long pid = strtol(e->d_name, NULL, 10);
		if (pid == (long)getpid()) continue;
		snprintf(path, sizeof path, "/proc/%ld/%s", pid, full ? "cmdline" : "comm");
		int n = readfile(path, buf, sizeof buf);
		if (n <= 0) continue;
		for (int k = 0; k < n; k++) if (buf[k] == 0) buf[k] = ' ';
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
		if (regexec(&re, buf, 0, NULL, 0) == 0) { printf("%ld\n", pid); found = 1; }
	}
	closedir(d);
	return found ? 0 : 1;
}
