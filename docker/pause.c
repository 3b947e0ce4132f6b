/* The pod sandbox ("pause") process of the test node's latchkey-pause image: it holds
 * the pod's namespaces and does nothing else. PID 1 of the sandbox, so it also reaps
 * the zombies a shared PID namespace hands it. Exits 0 on SIGTERM/SIGINT (how the
 * kubelet stops a sandbox). Built static by docker/build-images.sh: musl-gcc -static. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = stop;
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) return 1;
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &sa, NULL) < 0) return 2;
    for (;;) pause();
}
