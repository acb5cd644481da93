/* ipcs [-m] [-q] [-s]: the System V IPC objects of the caller's IPC namespace, read from
 * /proc/sysvipc (util-linux's ipcs does the same), in ipcs's layout. Debian's busybox has no ipcs
 * applet; critest runs `ipcs -m` to see whether a container shares the host's IPC namespace. */
#include <stdio.h>
#include <string.h>

static void table(const char *title, const char *file, const char *header) {
	printf("\n------ %s --------\n%s\n", title, header);
	FILE *f = fopen(file, "re");
	if (!f) return;
	char line[512];
	if (!fgets(line, sizeof line, f)) { fclose(f); return; } /* the kernel's own header */
	while (fgets(line, sizeof line, f)) {
		long long v[16] = {0};
		int n = 0;
		char *save = NULL;
		for (char *t = strtok_r(line, " \t\n", &save); t && n < 16; t = strtok_r(NULL, " \t\n", &save))
			sscanf(t, "%lld", &v[n++]);
		if (n < 5) continue;
		if (strcmp(file, "/proc/sysvipc/shm") == 0) /* perms is octal text: printed as read. key shmid perms size cpid lpid nattch uid */
			printf("0x%08llx %-10lld %-10lld %-10lld %-10lld %-10lld\n", v[0], v[1], v[7], v[2], v[3], v[6]);
		else if (strcmp(file, "/proc/sysvipc/sem") == 0) /* key semid perms nsems uid */
			printf("0x%08llx %-10lld %-10lld %-10lld %-10lld\n", v[0], v[1], v[4], v[2], v[3]);
		else /* key msqid perms cbytes qnum lspid lrpid uid */
			printf("0x%08llx %-10lld %-10lld %-10lld %-12lld %-10lld\n", v[0], v[1], v[7], v[2], v[3], v[4]);
	}
	fclose(f);
}

int main(int argc, char **argv) {
	int m = 0, q = 0, s = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-m") == 0) m = 1;
		else if (strcmp(argv[i], "-q") == 0) q = 1;
		else if (strcmp(argv[i], "-s") == 0) s = 1;
		else { fprintf(stderr, "usage: ipcs [-m] [-q] [-s]\n"); return 2; }
	}
	if (!m && !q && !s) m = q = s = 1;
	if (q) table("Message Queues", "/proc/sysvipc/msg", "key        msqid      owner      perms      used-bytes   messages");
	if (m) table("Shared Memory Segments", "/proc/sysvipc/shm", "key        shmid      owner      perms      bytes      nattch");
	if (s) table("Semaphore Arrays", "/proc/sysvipc/sem", "key        semid      owner      perms      nsems");
	return 0;
}
