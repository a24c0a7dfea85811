/* slidestream — the HDF5 embedding cache: one self-describing file per slide.
 *
 * Layout of <dir>/<slide_id>.h5 (a contract; CLAM/TRIDENT loaders read `features`/`coords`):
 *   features  float32 (N, D)   attrs: encoder, encoder_hash, feature, preprocessing, name
 *   coords    int64   (N, 2)   level-0 top-left (x, y) of each crop; attrs: patch_size,
 *                              patch_size_level0, level0_magnification, target_magnification,
 *                              target_mpp, slide_mpp, name (magnification = 10 / mpp,
 *                              written only when that mpp is known, i.e. > 0)
 *   centres   int64   (N, 2)   level-0 cell centres (x, y)
 *   cell_ids  uint64  (N)
 *   bboxes    int32   (N, 4)   optional: level-0 x0, y0, x1, y1 of the cell
 *   areas     uint32  (N)      optional: cell area in level-0 pixels
 *   root attrs: format="slidestream-cache", version=1, slide_id, label, split, complete=1
 * Datasets are chunked by many rows (<= ~1 MiB a chunk) with shuffle + deflate (when HDF5 has
 * zlib; otherwise uncompressed, with a warning). Strings are variable-length UTF-8
 * (h5py reads them back as str). A writer works on <slide_id>.h5.tmp and renames it only after
 * every row and attribute is on disk (`complete` written last), so a crash never leaves a file
 * that looks finished.
 *
 * Ownership: writers/readers own their HDF5 handles and buffers; `*_destroy`-style calls take
 * the caller's pointer and set it to NULL. Strings returned by reader accessors live as long
 * as the reader. All functions report failures through ss_error (domain "cache") and name the
 * file. Not thread-safe: Debian's serial libhdf5 is built without thread safety, so call the
 * cache (and any other HDF5 code) from one thread at a time; many open writers are fine.
 */
#ifndef SLIDESTREAM_CACHE_H
#define SLIDESTREAM_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define SS_CACHE_FORMAT "slidestream-cache"
#define SS_CACHE_VERSION 1
#define SS_CACHE_CHUNK_ROWS 1024 /* rows per internal write buffer; a good read block size */

/* What a cache file says about itself. Strings are borrowed (copied by the writer). */
typedef struct {
    const char *slide_id;      /* file stem; must be a plain file name (no '/') */
    int label;                 /* bag label; -1 = unknown */
    const char *split;         /* "train" | "val" | "test" | "" (NULL = "") */
    int patch_size;            /* crop side in pixels as fed to the encoder */
    int64_t patch_size_level0; /* the crop's side in level-0 pixels */
    double target_mpp;         /* µm/px of the crop; 0 = unknown */
    double slide_mpp;          /* µm/px of level 0; 0 = unknown */
    const char *encoder;       /* architecture, e.g. "resnet18" */
    const char *encoder_hash;  /* hex digest of the checkpoint file (ss_file_digest) */
    const char *feature;       /* "pooled" | "projection" */
    const char *preprocessing; /* e.g. "input=96;mean=0.485,0.456,0.406;std=0.229,0.224,0.225" */
    int dim;                   /* D, the embedding width (> 0) */
} ss_cache_meta_t;

/* ---- writing ------------------------------------------------------------------------- */

typedef struct ss_cache_writer ss_cache_writer_t;

/* Create <dir>/<slide_id>.h5.tmp (mkdir -p dir; an existing .tmp is replaced). */
ss_cache_writer_t *ss_cache_writer_new(const char *dir, const ss_cache_meta_t *meta);

/* Append n rows. features (n, dim) float32; coords (n, 2) level-0 top-left; centres (n, 2);
 * cell_ids (n); bboxes (n, 4) and areas (n) may be NULL — but the choice must be the same on
 * every call (the first call with n > 0 decides whether those datasets exist). Rows are
 * buffered and written a chunk at a time. On failure the writer is unusable: abort it. */
int ss_cache_writer_add(ss_cache_writer_t *w, int n, const float *features,
                        const int64_t *coords, const int64_t *centres, const uint64_t *cell_ids,
                        const int32_t *bboxes, const uint32_t *areas);

/* Rows added so far. */
int64_t ss_cache_writer_rows(const ss_cache_writer_t *w);

/* Final path the writer will produce (<dir>/<slide_id>.h5). */
const char *ss_cache_writer_path(const ss_cache_writer_t *w);

/* Flush, write the attributes (complete=1 last), close, fsync and rename .tmp -> .h5.
 * Frees the writer and sets *wp to NULL in every case; on failure the .tmp is removed. */
int ss_cache_writer_finish(ss_cache_writer_t **wp);

/* Close and delete the temporary file; frees and sets *wp to NULL. NULL-safe. */
void ss_cache_writer_abort(ss_cache_writer_t **wp);

/* ---- resume -------------------------------------------------------------------------- */

/* 1 when <dir>/<slide_id>.h5 exists, opens as a cache file, has complete=1 and was made with
 * this encoder_hash, feature and preprocessing (a NULL argument is not compared); 0 otherwise
 * with a one-line reason in why ("missing", "partial: ...", "different encoder: ...", ...).
 * Never reports a .tmp as complete. Returns -1 only for bad arguments. */
int ss_cache_check(const char *dir, const char *slide_id, const char *encoder_hash,
                   const char *feature, const char *preprocessing, char *why, size_t why_size);

/* Remove a stale <dir>/<slide_id>.h5.tmp left by a crash. Returns 1 if one was removed,
 * 0 if there was none, -1 on error. */
int ss_cache_discard_partial(const char *dir, const char *slide_id);

/* ---- reading (replay) ---------------------------------------------------------------- */

typedef struct ss_cache_reader ss_cache_reader_t;

/* Open and validate a cache file (datasets present, dtypes, shapes consistent). A CLAM/TRIDENT
 * file with only `features`/`coords` also opens: cell_ids are then the row index, centres
 * coords + patch_size_level0/2 (coords when that attribute is absent), and meta defaults to
 * slide_id = file stem, label = -1, split = "". */
ss_cache_reader_t *ss_cache_open(const char *path);

/* Metadata of an open file (pointers valid while the reader is open). */
const ss_cache_meta_t *ss_cache_meta(const ss_cache_reader_t *r);
int64_t ss_cache_rows(const ss_cache_reader_t *r);
int ss_cache_dim(const ss_cache_reader_t *r);
int ss_cache_is_complete(const ss_cache_reader_t *r); /* complete=1 attribute present */
int ss_cache_has_bboxes(const ss_cache_reader_t *r);
int ss_cache_has_areas(const ss_cache_reader_t *r);
const char *ss_cache_path(const ss_cache_reader_t *r);

/* Read rows [start, start+n) into the given arrays (shapes as for ss_cache_writer_add; any
 * pointer may be NULL to skip that column). bboxes/areas absent from the file read as zeros.
 * Callers bound memory by reading in blocks (e.g. SS_CACHE_CHUNK_ROWS). */
int ss_cache_read(ss_cache_reader_t *r, int64_t start, int n, float *features, int64_t *coords,
                  int64_t *centres, uint64_t *cell_ids, int32_t *bboxes, uint32_t *areas);

void ss_cache_close(ss_cache_reader_t **rp);

/* ---- helpers ------------------------------------------------------------------------- */

/* SHA-256 of a file's bytes as 64 lowercase hex digits + NUL. */
int ss_file_digest(const char *path, char hex[65]);

/* SHA-256 of a memory buffer (used by ss_file_digest; exposed for tests). */
void ss_sha256(const void *data, size_t len, uint8_t out[32]);

/* Disable HDF5's automatic error printing (idempotent); the cache and embed code translate
 * HDF5 failures into ss_error lines themselves. */
void ss_cache_hdf5_quiet(void);

/* Write an embed output file: `features` float32 (n, dim), `names` variable-length strings
 * (n), attrs encoder/encoder_hash/feature/preprocessing on the root; written to path.tmp and
 * renamed. Used by `slidestream embed`. */
int ss_embed_file_write(const char *path, int n, int dim, const float *features,
                        const char *const *names, const char *encoder, const char *encoder_hash,
                        const char *feature, const char *preprocessing);

#endif
