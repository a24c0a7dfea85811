/* Encoding and validation of slidestream messages (schema in include/slidestream/wire.h).
 * Payloads are little-endian too; the build refuses big-endian hosts rather than swapping. */
#include "slidestream/wire.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "slidestream payloads are little-endian; big-endian hosts are not supported"
#endif

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

ss_msg_header_t ss_msg_header_init(ss_msg_type_t type)
{
    ss_msg_header_t h;
    memset(&h, 0, sizeof h);
    h.version = SS_WIRE_VERSION;
    h.type = (uint16_t)type;
    h.label = -1;
    h.scale = 1.0f;
    return h;
}

size_t ss_wire_dtype_size(ss_wire_dtype_t dt)
{
    switch (dt) {
    case SS_DT_U8: return 1;
    case SS_DT_F32: return 4;
    case SS_DT_TEXT: return 1;
    default: return 0;
    }
}

void ss_msg_header_set_payload(ss_msg_header_t *h, ss_wire_dtype_t dtype, int ndim, const uint32_t *dims)
{
    uint64_t n = 1;
    for (int i = 0; i < 4; i++) {
        h->shape[i] = i < ndim ? dims[i] : 1;
        n *= h->shape[i];
    }
    h->dtype = (uint8_t)dtype;
    h->payload_size = (uint32_t)(n * ss_wire_dtype_size(dtype));
}

const char *ss_msg_type_name(int type)
{
    static const char *names[] = {"?",     "TILE", "CELL",     "EMBED", "SLIDE",
                                  "COUNT", "ERROR", "END", "SHUTDOWN", "STATS"};
    return type >= 1 && type <= SS_MSG_TYPE_MAX ? names[type] : "unknown";
}

void ss_msg_header_encode(const ss_msg_header_t *h, uint8_t out[SS_WIRE_HEADER_SIZE])
{
    memset(out, 0, SS_WIRE_HEADER_SIZE);
    put32(out + 0, SS_WIRE_MAGIC);
    put16(out + 4, h->version);
    put16(out + 6, h->type);
    put32(out + 8, h->slide);
    put32(out + 12, h->part);
    put32(out + 16, h->bag);
    put32(out + 20, (uint32_t)h->label);
    put64(out + 24, h->item);
    put64(out + 32, (uint64_t)h->x);
    put64(out + 40, (uint64_t)h->y);
    for (int i = 0; i < 4; i++) put32(out + 48 + 4 * i, h->shape[i]);
    out[64] = h->dtype;
    out[65] = h->flags;
    put16(out + 66, h->crop);
    put32(out + 68, h->payload_size);
    for (int i = 0; i < 4; i++) put32(out + 72 + 4 * i, (uint32_t)h->aux[i]);
    uint32_t sbits;
    memcpy(&sbits, &h->scale, 4);
    put32(out + 88, sbits);
    put32(out + 92, h->extra);
    put32(out + 96, h->area);
}

static int reject(char *why, size_t n, const char *fmt, ...)
{
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* What each type may carry. */
static int check_type_shape(const ss_msg_header_t *h, const uint8_t *payload, char *why, size_t n)
{
    const uint32_t *s = h->shape;
    switch (h->type) {
    case SS_MSG_TILE:
    case SS_MSG_CELL:
        if (h->dtype != SS_DT_U8)
            return reject(why, n, "%s message with dtype %u (want u8)", ss_msg_type_name(h->type),
                          h->dtype);
        if (s[2] != 3 || s[3] != 1)
            return reject(why, n, "%s message with shape [%u,%u,%u,%u] (want [h,w,3,1])",
                          ss_msg_type_name(h->type), s[0], s[1], s[2], s[3]);
        if (!isfinite(h->scale) || h->scale <= 0)
            return reject(why, n, "%s message with scale %g (want > 0)", ss_msg_type_name(h->type),
                          (double)h->scale);
        if (h->extra == 0)
            return reject(why, n, "%s message without its resolution (nm per pixel)",
                          ss_msg_type_name(h->type));
        if (h->type == SS_MSG_TILE) {
            const int32_t *a = h->aux;
            double ext_w = (double)s[1] * h->scale + 1, ext_h = (double)s[0] * h->scale + 1;
            if (a[0] < 0 || a[1] < 0 || a[2] <= 0 || a[3] <= 0 || (double)a[0] + a[2] > ext_w ||
                (double)a[1] + a[3] > ext_h)
                return reject(why, n, "TILE core (%d,%d,%d,%d) outside the tile's %.0fx%.0f "
                              "level-0 extent", a[0], a[1], a[2], a[3], ext_w, ext_h);
        } else if (h->aux[2] < 0 || h->aux[3] < 0) {
            return reject(why, n, "CELL bbox has negative size %dx%d", h->aux[2], h->aux[3]);
        }
        return 0;
    case SS_MSG_EMBED:
        if (h->dtype != SS_DT_F32)
            return reject(why, n, "EMBED message with dtype %u (want f32)", h->dtype);
        if (s[1] != 1 || s[2] != 1 || s[3] != 1)
            return reject(why, n, "EMBED message with shape [%u,%u,%u,%u] (want [d,1,1,1])", s[0],
                          s[1], s[2], s[3]);
        for (uint32_t i = 0; i < s[0]; i++) {
            float v;
            memcpy(&v, payload + 4 * (size_t)i, 4);
            if (!isfinite(v)) return reject(why, n, "EMBED element %u is not finite", i);
        }
        return 0;
    case SS_MSG_SLIDE:
    case SS_MSG_ERROR:
    case SS_MSG_STATS:
        if (h->dtype != SS_DT_TEXT)
            return reject(why, n, "%s message with dtype %u (want text)", ss_msg_type_name(h->type),
                          h->dtype);
        if (s[1] != 1 || s[2] != 1 || s[3] != 1 || s[0] > SS_WIRE_MAX_TEXT)
            return reject(why, n, "%s text of shape [%u,%u,%u,%u] (want [len<=%u,1,1,1])",
                          ss_msg_type_name(h->type), s[0], s[1], s[2], s[3], SS_WIRE_MAX_TEXT);
        if (memchr(payload, 0, s[0]))
            return reject(why, n, "%s text contains a NUL byte", ss_msg_type_name(h->type));
        return 0;
    case SS_MSG_COUNT:
        if (h->flags != SS_COUNT_PARTS && h->flags != SS_COUNT_ITEMS)
            return reject(why, n, "COUNT message with unknown kind %u", h->flags);
        return h->dtype != SS_DT_NONE || s[0] || s[1] || s[2] || s[3]
                   ? reject(why, n, "COUNT message must carry no payload")
                   : 0;
    case SS_MSG_END:
    case SS_MSG_SHUTDOWN:
        if (h->dtype != SS_DT_NONE || s[0] || s[1] || s[2] || s[3])
            return reject(why, n, "%s message must carry no payload", ss_msg_type_name(h->type));
        return 0;
    default:
        return reject(why, n, "unknown message type %u", h->type);
    }
}

int ss_msg_decode(int nframes, const void *hdr, size_t hdr_size, const void *payload,
                  size_t payload_size, ss_msg_header_t *out, char *why, size_t why_size)
{
    if (why && why_size) why[0] = '\0';
    if (nframes != 2) return reject(why, why_size, "message has %d frames (want 2)", nframes);
    if (!hdr || hdr_size != SS_WIRE_HEADER_SIZE)
        return reject(why, why_size, "header frame is %zu bytes (want %d)", hdr_size,
                      SS_WIRE_HEADER_SIZE);
    if (payload_size && !payload) return reject(why, why_size, "payload frame missing");
    const uint8_t *p = hdr;
    uint32_t magic = get32(p);
    if (magic != SS_WIRE_MAGIC) return reject(why, why_size, "bad magic 0x%08x", magic);
    ss_msg_header_t h;
    memset(&h, 0, sizeof h);
    h.version = get16(p + 4);
    if (h.version != SS_WIRE_VERSION)
        return reject(why, why_size, "wire version %u (this build speaks %d)", h.version,
                      SS_WIRE_VERSION);
    h.type = get16(p + 6);
    if (h.type < 1 || h.type > SS_MSG_TYPE_MAX)
        return reject(why, why_size, "unknown message type %u", h.type);
    h.slide = get32(p + 8);
    h.part = get32(p + 12);
    h.bag = get32(p + 16);
    h.label = (int32_t)get32(p + 20);
    h.item = get64(p + 24);
    h.x = (int64_t)get64(p + 32);
    h.y = (int64_t)get64(p + 40);
    for (int i = 0; i < 4; i++) h.shape[i] = get32(p + 48 + 4 * i);
    h.dtype = p[64];
    h.flags = p[65];
    h.crop = get16(p + 66);
    if (h.crop != 0 && h.type != SS_MSG_EMBED)
        return reject(why, why_size, "reserved header bytes are not zero (crop set on a %s)",
                      ss_msg_type_name(h.type));
    h.payload_size = get32(p + 68);
    for (int i = 0; i < 4; i++) h.aux[i] = (int32_t)get32(p + 72 + 4 * i);
    uint32_t sbits = get32(p + 88);
    memcpy(&h.scale, &sbits, 4);
    h.extra = get32(p + 92);
    h.area = get32(p + 96);
    if (get32(p + 100) != 0) return reject(why, why_size, "reserved header bytes are not zero");

    if (h.dtype > SS_DT_TEXT) return reject(why, why_size, "unknown dtype %u", h.dtype);
    if (h.label < -1) return reject(why, why_size, "label %d (want -1 or >= 0)", h.label);
    if (h.x < -(INT64_C(1) << 40) || h.x > (INT64_C(1) << 40) || h.y < -(INT64_C(1) << 40) ||
        h.y > (INT64_C(1) << 40))
        return reject(why, why_size, "coordinates (%lld,%lld) out of range", (long long)h.x,
                      (long long)h.y);
    if (h.dtype != SS_DT_NONE) {
        uint64_t count = 1;
        for (int i = 0; i < 4; i++) {
            if (h.shape[i] == 0 || h.shape[i] > SS_WIRE_MAX_DIM)
                return reject(why, why_size, "shape dim %d is %u (want 1..%u)", i, h.shape[i],
                              SS_WIRE_MAX_DIM);
            count *= h.shape[i];
            if (count > SS_WIRE_MAX_PAYLOAD)
                return reject(why, why_size, "payload of %llu elements exceeds %u bytes",
                              (unsigned long long)count, SS_WIRE_MAX_PAYLOAD);
        }
        uint64_t want = count * ss_wire_dtype_size((ss_wire_dtype_t)h.dtype);
        if (want > SS_WIRE_MAX_PAYLOAD)
            return reject(why, why_size, "payload of %llu bytes exceeds %u",
                          (unsigned long long)want, SS_WIRE_MAX_PAYLOAD);
        if (want != h.payload_size)
            return reject(why, why_size, "header says %u payload bytes but shape needs %llu",
                          h.payload_size, (unsigned long long)want);
    } else if (h.payload_size != 0) {
        return reject(why, why_size, "header says %u payload bytes for an empty payload",
                      h.payload_size);
    }
    if (payload_size != h.payload_size)
        return reject(why, why_size, "payload frame is %zu bytes, header says %u", payload_size,
                      h.payload_size);
    if (check_type_shape(&h, payload, why, why_size)) return -1;
    *out = h;
    return 0;
}
