/* slidestream — the crop store: cell crops kept in one HDF5 file for encoder training.
 *
 * `slidestream train` pulls cell crops from the pipeline's stream into a store so that epochs
 * are sampled from the file, and a later run with `--store F.h5` trains without the slides or
 * the upstream stages. Crops are read one at a time by index (random access); only the small
 * per-cell columns are held in memory, so stores of 10^5-10^6 crops open in bounded memory.
 *
 * Layout of F.h5 (a contract; h5py reads it directly). N cells, C = crop side, B bags,
 * S distinct source names:
 *   crops       uint8   (N, C, C, 3)  RGB, row-major (y, x, channel); chunked (1, C, C, 3),
 *                                     one crop per chunk, uncompressed: random reads of 96 px
 *                                     crops from the page cache ran at ~68 000/s against
 *                                     ~5 900/s with deflate level 1, which halved the file
 *                                     attrs: channels = "RGB"
 *   bag         uint32  (N)           the cell's bag id (one of bag_ids)
 *   label       int32   (N)           the cell's label (-1 = unknown; often its bag's label)
 *   cell_id     uint64  (N)           the pipeline's cell id
 *   centre      int64   (N, 2)        level-0 cell centre (x, y) in the source image
 *   source      int32   (N)           index into `sources`
 *   sources     string  (S)           source image / slide names, distinct
 *   bag_ids     uint32  (B)           distinct
 *   bag_names   string  (B)           "" when never given
 *   bag_labels  int32   (B)           -1 = unknown
 *   bag_splits  string  (B)           "train" | "val" | "test" | ""
 *   root attrs: format = "slidestream-crops", version = 1, crop_size = C, count = N
 * The file uses the HDF5 1.10 format (readable by HDF5 >= 1.10, so h5py built on it), whose
 * chunk index keeps a reader's memory flat however many crops it reads.
 * Per-cell columns are chunked by 4096 rows, uncompressed. String datasets are fixed-length
 * UTF-8, NUL-padded to the longest entry (h5py: bytes; .asstr() gives str); the string
 * attributes are variable-length (h5py: str). The reader also accepts other integer types,
 * other chunkings and compression, and variable-length strings (a store made with h5py).
 *
 * Crash safety: a writer works on F.h5.partial and renames it to F.h5 only in finish(), after
 * every row, table and attribute is written and synced; an existing F.h5 is replaced only
 * then. abort() deletes the partial file.
 *
 * Ownership: writers and stores own their HDF5 handles, buffers and string copies; strings
 * passed in are copied; strings returned by store accessors live as long as the store.
 * `*_finish`, `*_abort` and `*_close` take the caller's pointer and set it to NULL.
 * Failures are reported through ss_error (domain "cropstore") and name the file; a writer's
 * first failure is sticky (later calls fail without touching the file). Not thread-safe:
 * Debian's serial libhdf5 is built without thread safety, so a program calls HDF5 (this
 * module, the embedding cache, checkpoints) from one thread at a time.
 */
#ifndef SLIDESTREAM_TRAIN_STORE_H
#define SLIDESTREAM_TRAIN_STORE_H

#include <stddef.h>
#include <stdint.h>

#define SS_CROPS_FORMAT "slidestream-crops"
#define SS_CROPS_VERSION 1
#define SS_CROPS_MAX_SIZE 4096 /* largest crop side accepted (sanity bound on file input) */

/* One cell beside its crop. `source` is borrowed (copied by the writer; NULL = ""). */
typedef struct {
    uint32_t bag_id;
    int32_t label; /* -1 = unknown */
    uint64_t cell_id;
    int64_t x, y;       /* level-0 centre of the cell */
    const char *source; /* the image or slide the cell came from */
} ss_crop_info_t;

/* ---- writing ------------------------------------------------------------------------- */

typedef struct ss_crop_writer ss_crop_writer_t;

/* Create <path>.partial (replacing a stale one) for crops of crop_size x crop_size pixels
 * (1..SS_CROPS_MAX_SIZE). The directory must exist. */
ss_crop_writer_t *ss_crop_writer_new(const char *path, int crop_size);

/* Record a bag: its name (NULL = ""), label (-1 = unknown) and split (NULL = ""). A bag may be
 * added before or after its cells; a cell whose bag is never added gets a table entry with
 * name "", label -1, split "". Adding the same id again with different details is an error. */
int ss_crop_writer_add_bag(ss_crop_writer_t *w, uint32_t bag_id, const char *name, int label,
                           const char *split);

/* Append one cell. crop (size, size, 3) uint8 RGB; `size` is the crop's side, which must equal
 * the store's crop size (a mismatch is refused and names both sizes). Crops are buffered a few
 * MiB at a time and written in blocks. */
int ss_crop_writer_add(ss_crop_writer_t *w, const uint8_t *crop, int size,
                       const ss_crop_info_t *info);

/* Cells added so far. */
int64_t ss_crop_writer_count(const ss_crop_writer_t *w);

/* The final path (what finish() produces). */
const char *ss_crop_writer_path(const ss_crop_writer_t *w);

/* Flush, write the tables and `count`, close, fsync and rename <path>.partial -> <path>.
 * Frees the writer and sets *wp to NULL in every case; on failure the partial file is
 * removed. */
int ss_crop_writer_finish(ss_crop_writer_t **wp);

/* Close and delete the partial file; frees and sets *wp to NULL. NULL-safe. */
void ss_crop_writer_abort(ss_crop_writer_t **wp);

/* ---- reading ------------------------------------------------------------------------- */

typedef struct ss_crop_store ss_crop_store_t;

/* Open and validate a store: format and version, every dataset's type and shape, the bag
 * table (distinct ids, each cell's bag present) and source indices. expect_crop_size > 0
 * refuses a store of another crop size (the message names the file and both sizes); 0 accepts
 * any. The per-cell columns are loaded (~50 bytes a cell); crops stay on disk. */
ss_crop_store_t *ss_crop_store_open(const char *path, int expect_crop_size);

void ss_crop_store_close(ss_crop_store_t **sp);

const char *ss_crop_store_path(const ss_crop_store_t *s);
int64_t ss_crop_store_count(const ss_crop_store_t *s);
int ss_crop_store_crop_size(const ss_crop_store_t *s);

/* Per cell, 0 <= i < count (asserted: indices are the caller's own). */
int32_t ss_crop_store_label(const ss_crop_store_t *s, int64_t i);
uint32_t ss_crop_store_bag(const ss_crop_store_t *s, int64_t i);  /* bag id */
int ss_crop_store_bag_index(const ss_crop_store_t *s, int64_t i); /* 0 .. nbags-1 */
uint64_t ss_crop_store_cell_id(const ss_crop_store_t *s, int64_t i);
void ss_crop_store_centre(const ss_crop_store_t *s, int64_t i, int64_t *x, int64_t *y);
const char *ss_crop_store_source(const ss_crop_store_t *s, int64_t i);
/* All of the above at once (info->source borrowed from the store). */
void ss_crop_store_info(const ss_crop_store_t *s, int64_t i, ss_crop_info_t *info);

/* Bags, in the order they were first recorded, 0 <= b < nbags. */
int ss_crop_store_nbags(const ss_crop_store_t *s);
uint32_t ss_crop_store_bag_id(const ss_crop_store_t *s, int b);
const char *ss_crop_store_bag_name(const ss_crop_store_t *s, int b);
int ss_crop_store_bag_label(const ss_crop_store_t *s, int b);
const char *ss_crop_store_bag_split(const ss_crop_store_t *s, int b);
/* The indices of bag b's cells, ascending; *n receives their number. */
const int64_t *ss_crop_store_bag_cells(const ss_crop_store_t *s, int b, int64_t *n);

/* Read crop i into out (C, C, 3). */
int ss_crop_store_read(ss_crop_store_t *s, int64_t i, uint8_t *out);

/* Read n crops into out (n, C, C, 3), out[k] = crop idx[k]; the file is visited in ascending
 * index order for locality (repeated indices are fine). */
int ss_crop_store_read_many(ss_crop_store_t *s, const int64_t *idx, int n, uint8_t *out);

/* ---- embedding ----------------------------------------------------------------------- */

/* Embeds every bag of the store at store_path with the encoder `checkpoint` (feature "pooled"
 * or "projection") into cache_dir/<bag name>.h5, one embedding-cache file per bag, with the
 * bag's label and split; each cell is centre-cut to the encoder's input size (the store's
 * crops must be at least that big). A bag already cached with this encoder is kept, so an
 * interrupted call resumes. */
int ss_crop_store_embed(const char *store_path, const char *checkpoint, const char *feature,
                        const char *cache_dir, int quiet);

#endif
