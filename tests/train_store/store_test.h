/* train.store test program: what its files share (store_test.h). */
#ifndef SS_STORE_TEST_H
#define SS_STORE_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/train_store.h"

/* test_train_store.c: a path in the scratch directory (4 rotating buffers), file existence */
const char *pathf(const char *name);
int exists(const char *p);

/* store_reference.c: the reference cells and stores; bag k*10 has split splits[k % 3] */
extern const char *const splits[3];
void make_crop(int64_t i, int C, uint8_t *out);
uint32_t ref_bag(int64_t i);
void ref_info(int64_t i, int64_t n, char *source, size_t size, ss_crop_info_t *info);
void add_bags(ss_crop_writer_t *w, int after);
int write_ref(const char *path, int64_t n, int C);
void check_ref(const char *path, int64_t n, int C);

/* store_broken.c: a file's size in bytes (-1 when absent) */
long file_size(const char *p);

/* the cases, one file a concept */
void case_roundtrip(void);
void case_finish(void);
void case_abort(void);
void case_size(void);
void case_badfiles(void);
void case_junk(void);
void case_diskfull(void);
void case_write_sample(void);
void case_read_foreign(void);
void case_bench(int argc, char **argv);

/* each file's failed checks (check.h counts per file) */
int store_reference_failures(void);
int store_cases_failures(void);
int store_broken_failures(void);
int store_h5py_failures(void);

#endif
