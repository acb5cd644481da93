/* pause: the sandbox's placeholder process, as Kubernetes' pause image: sleeps until SIGINT or
 * SIGTERM (then exits 0) and reaps the zombies it inherits as pid 1 of a shared pid namespace. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
	if (getpid() != 1) fprintf(stderr, "pause: warning: not pid 1\n");
	struct sigaction sa = {0};
	sa.sa_handler = quit;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = reap;
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	for (;;) pause();
}
