/* wire.* — every rejection path of ss_msg_decode, written as data: a valid message, one
 * mutation, and the words the reason must contain. Plus round trips of every type. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/wire.h"

#include "../check.h"


typedef struct {
    uint8_t hdr[SS_WIRE_HEADER_SIZE + 8];
    size_t hdr_size;
    uint8_t payload[4096];
    size_t payload_size;
    int nframes;
} raw_t;

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static raw_t make(ss_msg_type_t type)
{
    raw_t r;
    memset(&r, 0, sizeof r);
    ss_msg_header_t h = ss_msg_header_init(type);
    h.slide = 7;
    h.part = 3;
    h.item = 42;
    h.x = 1000;
    h.y = 2000;
    switch (type) {
    case SS_MSG_TILE: {
        uint32_t d[3] = {16, 16, 3};
        ss_msg_header_set_payload(&h, SS_DT_U8, 3, d);
        h.scale = 2.0f;
        h.extra = 500;
        h.aux[0] = 4, h.aux[1] = 4, h.aux[2] = 24, h.aux[3] = 24;
        break;
    }
    case SS_MSG_CELL: {
        uint32_t d[3] = {8, 8, 3};
        ss_msg_header_set_payload(&h, SS_DT_U8, 3, d);
        h.extra = 250;
        h.aux[0] = 990, h.aux[1] = 1990, h.aux[2] = 20, h.aux[3] = 20;
        h.area = 300;
        break;
    }
    case SS_MSG_EMBED: {
        uint32_t d[1] = {16};
        ss_msg_header_set_payload(&h, SS_DT_F32, 1, d);
        for (int i = 0; i < 16; i++) {
            float v = (float)i * 0.5f;
            memcpy(r.payload + 4 * i, &v, 4);
        }
        break;
    }
    case SS_MSG_SLIDE:
    case SS_MSG_ERROR:
    case SS_MSG_STATS: {
        const char *t = "id=a\npath=/x y.svs\n";
        uint32_t d[1] = {(uint32_t)strlen(t)};
        ss_msg_header_set_payload(&h, SS_DT_TEXT, 1, d);
        memcpy(r.payload, t, strlen(t));
        break;
    }
    case SS_MSG_COUNT:
        h.flags = SS_COUNT_ITEMS;
        break;
    default:
        break;
    }
    ss_msg_header_encode(&h, r.hdr);
    r.hdr_size = SS_WIRE_HEADER_SIZE;
    r.payload_size = h.payload_size;
    r.nframes = 2;
    return r;
}

static int decode(const raw_t *r, ss_msg_header_t *h, char *why, size_t n)
{
    return ss_msg_decode(r->nframes, r->hdr, r->hdr_size, r->payload, r->payload_size, h, why, n);
}

typedef struct {
    const char *name;
    ss_msg_type_t type;
    void (*mutate)(raw_t *r);
    const char *expect; /* substring of the reason */
} reject_case_t;

static void m_frames1(raw_t *r) { r->nframes = 1; }
static void m_frames3(raw_t *r) { r->nframes = 3; }
static void m_hdr_short(raw_t *r) { r->hdr_size = SS_WIRE_HEADER_SIZE - 1; }
static void m_hdr_long(raw_t *r) { r->hdr_size = SS_WIRE_HEADER_SIZE + 1; }
static void m_magic(raw_t *r) { r->hdr[0] ^= 0xff; }
static void m_version(raw_t *r) { r->hdr[4] = 2; }
static void m_type0(raw_t *r) { r->hdr[6] = 0; r->hdr[7] = 0; }
static void m_type_big(raw_t *r) { r->hdr[6] = 77; }
static void m_reserved66(raw_t *r) { r->hdr[66] = 1; }
static void m_reserved100(raw_t *r) { r->hdr[101] = 1; }
static void m_dtype_unknown(raw_t *r) { r->hdr[64] = 9; }
static void m_label(raw_t *r) { put32(r->hdr + 20, (uint32_t)-5); }
static void m_coord(raw_t *r) { r->hdr[32 + 7] = 0x40; }
static void m_dim0(raw_t *r) { put32(r->hdr + 48, 0); }
static void m_dim_huge(raw_t *r) { put32(r->hdr + 48, 70000); }
static void m_overflow(raw_t *r)
{
    put32(r->hdr + 48, 65536), put32(r->hdr + 52, 65536), put32(r->hdr + 56, 3);
}
static void m_size_vs_shape(raw_t *r) { put32(r->hdr + 68, 10); }
static void m_frame_short(raw_t *r) { r->payload_size -= 1; }
static void m_tile_f32(raw_t *r) { r->hdr[64] = SS_DT_F32; put32(r->hdr + 68, 16 * 16 * 3 * 4); r->payload_size = 16 * 16 * 3 * 4; }
static void m_tile_4ch(raw_t *r) { put32(r->hdr + 56, 4); put32(r->hdr + 68, 16 * 16 * 4); r->payload_size = 16 * 16 * 4; }
static void m_scale0(raw_t *r) { put32(r->hdr + 88, 0); }
static void m_scale_nan(raw_t *r) { put32(r->hdr + 88, 0x7fc00000u); }
static void m_no_mpp(raw_t *r) { put32(r->hdr + 92, 0); }
static void m_core_out(raw_t *r) { put32(r->hdr + 72 + 8, 100); }
static void m_core_neg(raw_t *r) { put32(r->hdr + 72, (uint32_t)-1); }
static void m_bbox_neg(raw_t *r) { put32(r->hdr + 72 + 12, (uint32_t)-3); }
static void m_embed_nan(raw_t *r) { float v = NAN; memcpy(r->payload + 8, &v, 4); }
static void m_embed_inf(raw_t *r) { float v = INFINITY; memcpy(r->payload + 60, &v, 4); }
static void m_embed_shape(raw_t *r) { put32(r->hdr + 48, 8); put32(r->hdr + 52, 2); }
static void m_embed_u8(raw_t *r) { r->hdr[64] = SS_DT_U8; put32(r->hdr + 68, 16); r->payload_size = 16; }
static void m_text_nul(raw_t *r) { r->payload[3] = 0; }
static void m_text_long(raw_t *r) { put32(r->hdr + 48, SS_WIRE_MAX_TEXT + 1); put32(r->hdr + 68, SS_WIRE_MAX_TEXT + 1); r->payload_size = SS_WIRE_MAX_TEXT + 1; }
static void m_count_kind(raw_t *r) { r->hdr[65] = 9; }
static void m_count_payload(raw_t *r) { r->hdr[64] = SS_DT_U8; put32(r->hdr + 48, 1), put32(r->hdr + 52, 1), put32(r->hdr + 56, 1), put32(r->hdr + 60, 1); put32(r->hdr + 68, 1); r->payload_size = 1; }
static void m_end_size(raw_t *r) { put32(r->hdr + 68, 4); r->payload_size = 4; }
static void m_none_shape(raw_t *r) { put32(r->hdr + 52, 1); }

static const reject_case_t cases[] = {
    {"one frame", SS_MSG_TILE, m_frames1, "frames"},
    {"three frames", SS_MSG_CELL, m_frames3, "frames"},
    {"short header", SS_MSG_TILE, m_hdr_short, "header frame"},
    {"long header", SS_MSG_TILE, m_hdr_long, "header frame"},
    {"bad magic", SS_MSG_EMBED, m_magic, "magic"},
    {"bad version", SS_MSG_EMBED, m_version, "version"},
    {"type 0", SS_MSG_TILE, m_type0, "type"},
    {"type 77", SS_MSG_TILE, m_type_big, "type"},
    {"reserved 66", SS_MSG_TILE, m_reserved66, "reserved"},
    {"reserved 100", SS_MSG_CELL, m_reserved100, "reserved"},
    {"unknown dtype", SS_MSG_TILE, m_dtype_unknown, "dtype"},
    {"label -5", SS_MSG_CELL, m_label, "label"},
    {"coordinate range", SS_MSG_CELL, m_coord, "coordinates"},
    {"zero dim", SS_MSG_TILE, m_dim0, "shape dim"},
    {"huge dim", SS_MSG_TILE, m_dim_huge, "shape dim"},
    {"payload overflow", SS_MSG_TILE, m_overflow, "exceeds"},
    {"size vs shape", SS_MSG_TILE, m_size_vs_shape, "shape needs"},
    {"frame vs header", SS_MSG_TILE, m_frame_short, "payload frame"},
    {"tile as f32", SS_MSG_TILE, m_tile_f32, "want u8"},
    {"tile with 4 channels", SS_MSG_TILE, m_tile_4ch, "want [h,w,3,1]"},
    {"scale 0", SS_MSG_TILE, m_scale0, "scale"},
    {"scale NaN", SS_MSG_CELL, m_scale_nan, "scale"},
    {"tile without mpp", SS_MSG_TILE, m_no_mpp, "nm per pixel"},
    {"core outside tile", SS_MSG_TILE, m_core_out, "core"},
    {"core negative", SS_MSG_TILE, m_core_neg, "core"},
    {"cell bbox negative", SS_MSG_CELL, m_bbox_neg, "bbox"},
    {"embedding NaN", SS_MSG_EMBED, m_embed_nan, "not finite"},
    {"embedding inf", SS_MSG_EMBED, m_embed_inf, "not finite"},
    {"embedding 2-d", SS_MSG_EMBED, m_embed_shape, "want [d,1,1,1]"},
    {"embedding as u8", SS_MSG_EMBED, m_embed_u8, "want f32"},
    {"text with NUL", SS_MSG_SLIDE, m_text_nul, "NUL"},
    {"text too long", SS_MSG_ERROR, m_text_long, "65537"},
    {"count kind", SS_MSG_COUNT, m_count_kind, "kind"},
    {"count with payload", SS_MSG_COUNT, m_count_payload, "no payload"},
    {"end with payload bytes", SS_MSG_END, m_end_size, "empty payload"},
    {"shutdown with shape", SS_MSG_SHUTDOWN, m_none_shape, "no payload"},
};

int main(void)
{
    /* Round trips. */
    for (int t = 1; t <= SS_MSG_TYPE_MAX; t++) {
        raw_t r = make((ss_msg_type_t)t);
        ss_msg_header_t h;
        char why[256];
        int rc = decode(&r, &h, why, sizeof why);
        CHECK(rc == 0, "type %s: valid message rejected: %s", ss_msg_type_name(t), why);
        if (rc) continue;
        CHECK(h.type == t && h.slide == 7 && h.part == 3 && h.item == 42 && h.x == 1000 &&
                  h.y == 2000,
              "type %s: fields changed in the round trip", ss_msg_type_name(t));
        uint8_t again[SS_WIRE_HEADER_SIZE];
        ss_msg_header_encode(&h, again);
        CHECK(!memcmp(again, r.hdr, SS_WIRE_HEADER_SIZE), "type %s: re-encoding differs",
              ss_msg_type_name(t));
    }
    /* Rejections. */
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        raw_t r = make(cases[i].type);
        cases[i].mutate(&r);
        ss_msg_header_t h;
        memset(&h, 0xab, sizeof h);
        ss_msg_header_t before = h;
        char why[256] = "";
        int rc = decode(&r, &h, why, sizeof why);
        CHECK(rc == -1, "case '%s': accepted", cases[i].name);
        CHECK(strstr(why, cases[i].expect) != NULL, "case '%s': reason '%s' lacks '%s'",
              cases[i].name, why, cases[i].expect);
        CHECK(!memcmp(&h, &before, sizeof h), "case '%s': output written on rejection",
              cases[i].name);
    }
    /* A NULL payload pointer with a non-zero size is refused, not dereferenced. */
    raw_t r = make(SS_MSG_TILE);
    ss_msg_header_t h;
    char why[256];
    CHECK(ss_msg_decode(2, r.hdr, r.hdr_size, NULL, r.payload_size, &h, why, sizeof why) == -1,
          "NULL payload accepted");
    printf("%zu rejection cases, %d round trips: %s\n", n, SS_MSG_TYPE_MAX,
           check_failures ? "FAILED" : "ok");
    return check_failures ? 1 : 0;
}
