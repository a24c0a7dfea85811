/* slidestream — the wire schema: every message on every plane, in one place.
 *
 * A message is two ZeroMQ frames: a fixed 104-byte little-endian header and a payload (which
 * may be empty). Fields are encoded explicitly byte by byte, never by copying the struct, so
 * the schema is the same on every machine. ss_msg_decode() validates a received message
 * completely — frame count and sizes, magic, version, type, dtype, shape, payload size, text
 * contents, reserved fields — before anything reads its payload; a message that fails is
 * rejected with a reason and counted by the caller, never trusted.
 *
 * Header layout (offsets in bytes, all little-endian):
 *    0 u32 magic 'SSTM'        4 u16 version          6 u16 type
 *    8 u32 slide (run index)  12 u32 part (tile)      16 u32 bag
 *   20 i32 label (-1 unknown) 24 u64 item (cell id, tile index, count)
 *   32 i64 x                  40 i64 y                (level-0 pixels)
 *   48 u32 shape[4]           64 u8 dtype  65 u8 flags  66 u16 crop (EMBED only, else 0)
 *   68 u32 payload_size       72 i32 aux[4]           88 f32 scale   92 u32 extra
 *   96 u32 area              100 u32 reserved (0)
 */
#ifndef SLIDESTREAM_WIRE_H
#define SLIDESTREAM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define SS_WIRE_MAGIC 0x4d545353u /* "SSTM" read as little-endian bytes */
#define SS_WIRE_VERSION 1
#define SS_WIRE_HEADER_SIZE 104

/* Upper bounds that any well-formed message respects. */
#define SS_WIRE_MAX_DIM 65536u
#define SS_WIRE_MAX_PAYLOAD (256u << 20) /* 256 MiB */
#define SS_WIRE_MAX_TEXT 65536u

typedef enum {
    SS_MSG_TILE = 1,     /* data: u8 RGB tile [h, w, 3]; x,y = level-0 origin; aux = the
                            core rect in level-0 px relative to (x, y) (dx, dy, w, h);
                            scale = level-0 px per tile px; extra = tile mpp in nanometres;
                            part = tile number within the slide (0, 1, ...) */
    SS_MSG_CELL = 2,     /* data: u8 RGB crop [h, w, 3]; x,y = level-0 centre; aux = level-0
                            bbox (x, y, w, h); area = level-0 px^2; scale as TILE;
                            part = owning tile, item = cell id within the slide
                            (part * 65536 + index in tile); extra as TILE: the crop's
                            nm per pixel; flags = cell kind (1 nucleated, 2 red) */
    SS_MSG_EMBED = 3,    /* data: f32 vector [d]; ids and geometry as the CELL it came from;
                            crop = side in px of the crop that was embedded */
    SS_MSG_SLIDE = 4,    /* control: slide announced; text payload "key=value\n" lines
                            (id, path, label, mpp, mpp_source, width, height, ...) */
    SS_MSG_COUNT = 5,    /* control: count announcement; flags says what is counted (see
                            ss_count_kind_t); item = the count */
    SS_MSG_ERROR = 6,    /* control: a per-item fault, text payload naming it */
    SS_MSG_END = 7,      /* control: the producer is done; item = slides announced */
    SS_MSG_SHUTDOWN = 8, /* control broadcast: stop now */
    SS_MSG_STATS = 9,    /* status: a stage's counters, text "key=value\n" lines */
    SS_MSG_TYPE_MAX = 9
} ss_msg_type_t;

typedef enum {
    SS_DT_NONE = 0, /* empty payload, shape all zero */
    SS_DT_U8 = 1,
    SS_DT_F32 = 2,
    SS_DT_TEXT = 3 /* UTF-8 without NUL; shape = {length, 1, 1, 1} */
} ss_wire_dtype_t;

typedef enum {
    SS_COUNT_PARTS = 1, /* slide `slide` has `item` parts (tiles) in total */
    SS_COUNT_ITEMS = 2  /* part `part` of slide `slide` yielded `item` items (cells) */
} ss_count_kind_t;

typedef struct {
    uint16_t version;
    uint16_t type; /* ss_msg_type_t */
    uint32_t slide, part, bag;
    int32_t label;
    uint64_t item;
    int64_t x, y;
    uint32_t shape[4];
    uint8_t dtype; /* ss_wire_dtype_t */
    uint8_t flags;
    uint16_t crop;
    uint32_t payload_size;
    int32_t aux[4];
    float scale;
    uint32_t extra;
    uint32_t area;
} ss_msg_header_t;

/* A header with magic/version set, label -1, scale 1 and everything else zero. */
ss_msg_header_t ss_msg_header_init(ss_msg_type_t type);

/* Fill shape/dtype/payload_size for a typed payload. dims: up to 4 (missing dims = 1). */
void ss_msg_header_set_payload(ss_msg_header_t *h, ss_wire_dtype_t dtype, int ndim, const uint32_t *dims);

/* Serialise into exactly SS_WIRE_HEADER_SIZE bytes. */
void ss_msg_header_encode(const ss_msg_header_t *h, uint8_t out[SS_WIRE_HEADER_SIZE]);

/* Validate and decode a received message: `nframes` frames, the header frame `hdr` of
 * `hdr_size` bytes and the payload frame `payload` of `payload_size` bytes (NULL/0 when
 * absent). On success fills *out and returns 0. On failure returns -1 and writes a one-line
 * reason into why[why_size] (always NUL-terminated); the error buffer is not touched, since
 * malformed traffic is counted, not fatal. */
int ss_msg_decode(int nframes, const void *hdr, size_t hdr_size, const void *payload,
                  size_t payload_size, ss_msg_header_t *out, char *why, size_t why_size);

/* Bytes per element of a dtype (TEXT counts 1), 0 for NONE or unknown. */
size_t ss_wire_dtype_size(ss_wire_dtype_t dt);
const char *ss_msg_type_name(int type);

#endif
