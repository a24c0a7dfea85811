/* slidestream cache — HDF5 helpers shared by the writer, the reader and the embed file.
 * Every public cache function silences HDF5's own stderr traces for its duration and turns
 * failures into ss_error lines (or a caller's reason buffer) that name the file. */
#ifndef SS_CACHE_INTERNAL_H
#define SS_CACHE_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    H5E_auto2_t func;
    void *data;
} h5quiet_t;

h5quiet_t h5q_begin(void);
void h5q_end(h5quiet_t q);

/* The innermost message of HDF5's current error stack ("" when empty), then clear it. */
void h5_detail(char *out, size_t size);

/* Remember the current stack's message before cleanup calls clear it. */
void h5_save_detail(void);

/* ss_error("cache", "<path>: <what> (<hdf5 detail>)"); returns -1. */
int h5_fail(const char *path, const char *what);

/* A reason for a caller's buffer (readers that report through their own message): printf into
 * why; h5_why appends HDF5's innermost message, when there is one, as "<what>: <detail>".
 * Both return -1. */
int cache_why(char *why, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int h5_why(char *why, size_t size, const char *what);

/* Opens an existing HDF5 file read-only; -1 with the reason in why: unreadable (the system's
 * message), not HDF5, or refused by HDF5. */
hid_t h5_open_readonly(const char *path, char *why, size_t size);

/* A dataset's type class into *cls and extent into dims[0 .. rank) (rank <= 8); returns the
 * rank, -1 when HDF5 cannot tell. */
int h5_ds_shape(hid_t d, H5T_class_t *cls, hsize_t dims[8]);

/* Attributes on any object. Strings are variable-length UTF-8 scalars (h5py: str). */
int h5_attr_str(hid_t obj, const char *name, const char *value);
int h5_attr_i64(hid_t obj, const char *name, int64_t value);
int h5_attr_f64(hid_t obj, const char *name, double value);

/* Read back: 0 ok, 1 absent or not convertible, -1 error. Strings: fixed or variable length,
 * malloc'd into *out. */
int h5_get_str(hid_t obj, const char *name, char **out);
int h5_get_i64(hid_t obj, const char *name, int64_t *out);
int h5_get_f64(hid_t obj, const char *name, double *out);

/* Extendible datasets of rows, each row shaped tail[0 .. rank - 1) (rank 1: one value a row,
 * tail unused). h5_create_rows makes one with chunk_rows rows a chunk; H5_ROWS_DEFLATE adds
 * shuffle + deflate, H5_ROWS_NO_CACHE gives it no chunk cache (whole-chunk writes go straight to
 * the file). h5_append_rows writes rows [at, at + n) from buf. Both keep HDF5's message for
 * h5_detail when they fail. */
enum { H5_ROWS_DEFLATE = 1, H5_ROWS_NO_CACHE = 2 };
hid_t h5_create_rows(hid_t file, const char *name, hid_t type, int rank, const hsize_t *tail,
                     hsize_t chunk_rows, unsigned flags);
int h5_append_rows(hid_t d, hid_t memtype, int rank, const hsize_t *tail, hsize_t at, hsize_t n,
                   const void *buf);

/* mkdir -p. */
int cache_mkdirs(const char *dir);

/* fsync a file by path, and a directory (after a rename). */
int cache_fsync_path(const char *path, int is_dir);

/* The end of a file written as <tmp> and renamed when whole (the cache writer, the crop store
 * writer). h5_close_all closes each open dataset of ds[0..n) and then the file, setting each to
 * -1; it returns -1 when any close failed (closing the file writes its metadata, so a full disk
 * shows up there). cache_commit moves the closed tmp to path durably: fsync, rename (a failure
 * is reported in `domain`), then a best-effort fsync of the directory. h5_discard gives up on
 * the file: closes what is open (quietly), clears HDF5's error stack and removes tmp. */
int h5_close_all(hid_t *ds, int n, hid_t *file);
int cache_commit(const char *tmp, const char *path, const char *domain);
void h5_discard(hid_t *ds, int n, hid_t *file, const char *tmp);

/* malloc'd printf. */
char *cache_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
