/* Tries the system calls the default seccomp profile must refuse, and says what happened.
 *
 * Built statically by tests/integration/test_runc_seccomp.py and run inside containers:
 * prints one "name=result" line per call, result "ok" or the error's name (EPERM, ENOSYS …).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KEYCTL_GET_KEYRING_ID 0
#define KEY_SPEC_SESSION_KEYRING -3

static const char *result(long rc) {
    if (rc >= 0)
        return "ok";
    switch (errno) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    default: return strerror(errno);
    }
}

int main(void) {
    long rc = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
    printf("keyctl=%s\n", result(rc));
    rc = unshare(CLONE_NEWUSER);
    printf("unshare-user=%s\n", result(rc));
    return 0;
}
