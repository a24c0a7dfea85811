/* slidestream — the scratch directory of a test program run as `PROG CASE ROOT`: each case runs
 * in a fresh ROOT/CASE-XXXXXX, removed when the case passes; a case that shares its files with a
 * script (write-sample, read-foreign) uses ROOT itself and keeps them. The including file
 * defines _XOPEN_SOURCE 700 (nftw) before its first #include. */
#ifndef SS_TESTS_SCRATCH_H
#define SS_TESTS_SCRATCH_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char scratch[900];

/* Checks `PROG CASE ROOT` and makes scratch for the case; 0, or the exit code after saying why
 * (2: usage, 1: no directory). *shared: the case shares ROOT with a script (keep its files). */
static int scratch_begin(int argc, char **argv, int *shared)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CASE SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    const char *name = argv[1], *root = argv[2];
    *shared = !strcmp(name, "write-sample") || !strcmp(name, "read-foreign");
    mkdir(root, 0755);
    if (*shared) {
        snprintf(scratch, sizeof scratch, "%s", root);
        return 0;
    }
    snprintf(scratch, sizeof scratch, "%s/%s-XXXXXX", root, name);
    if (!mkdtemp(scratch)) {
        perror(scratch);
        return 1;
    }
    return 0;
}

static int scratch_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)remove(p);
    return 0;
}

/* Removes scratch and everything below it. */
static void scratch_remove(void)
{
    nftw(scratch, scratch_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The verdict of case `name` of test program `prog` with `failures` failed checks: 1 (saying so;
 * the scratch files are kept to look at), or 0 (saying so; the scratch removed unless shared). */
static int scratch_end(const char *prog, const char *name, int failures, int shared)
{
    if (failures) {
        fprintf(stderr, "%s.%s: %d check(s) failed (files kept in %s)\n", prog, name, failures,
                scratch);
        return 1;
    }
    printf("%s.%s: all checks passed\n", prog, name);
    if (!shared) scratch_remove();
    return 0;
}

#endif
