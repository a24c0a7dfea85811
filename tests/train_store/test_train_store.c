/* train.store.* tests: the HDF5 crop store (include/slidestream/train_store.h) — round trips,
 * the partial-file protocol (finish, abort, crash), crop-size mismatches, broken files as data,
 * junk anywhere in a store, write failures. One executable: argv[1] picks the case, argv[2] is a
 * scratch directory. `write-sample DIR` writes the store the h5py test reads, `read-foreign DIR`
 * reads the one h5py writes, and `bench DIR [N] [C]` measures random-read speed (not a test).
 * This file holds main and the scratch paths; the cases are in store_*.c, one concept a file. */
#define _XOPEN_SOURCE 700 /* nftw, in ../scratch.h */
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "slidestream/error.h"
#include "slidestream/train_store.h"

#include "../check.h"
#include "../scratch.h"
#include "store_test.h"

const char *pathf(const char *name)
{
    static char buf[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", scratch, name);
    return buf[k];
}

int exists(const char *p)
{
    return access(p, F_OK) == 0;
}


int main(int argc, char **argv)
{
    int shared, rc = scratch_begin(argc, argv, &shared);
    if (rc) return rc;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the broken-file helpers expect failures */
    if (!strcmp(argv[1], "bench")) {
        case_bench(argc, argv);
    } else {
        struct {
            const char *name;
            void (*fn)(void);
        } cases[] = {{"roundtrip", case_roundtrip},
                     {"finish", case_finish},
                     {"abort", case_abort},
                     {"size", case_size},
                     {"badfiles", case_badfiles},
                     {"junk", case_junk},
                     {"diskfull", case_diskfull},
                     {"write-sample", case_write_sample},
                     {"read-foreign", case_read_foreign}};
        size_t i = 0;
        while (i < sizeof cases / sizeof cases[0] && strcmp(argv[1], cases[i].name))
            i++;
        if (i == sizeof cases / sizeof cases[0]) {
            fprintf(stderr, "unknown case %s\n", argv[1]);
            return 2;
        }
        cases[i].fn();
    }
    check_failures += store_reference_failures() + store_cases_failures() +
                      store_broken_failures() + store_h5py_failures();
    return scratch_end("train.store", argv[1], check_failures, shared);
}
