/* Foreground mask → QuPath-compatible GeoJSON (level-0 pixel coordinates).
 *
 * The outlines are traced along pixel edges: every foreground pixel side that faces background
 * is a directed edge with the foreground on its right (screen coordinates, y down). Edges are
 * linked into rings, turning right first where two edges leave one vertex, so diagonal-only
 * neighbours stay apart: rings bound 4-connected components, never cross, and touch at most at
 * points, as the OGC rules for MultiPolygon ask. A ring with positive shoelace area (y down) is an
 * outer boundary, a negative one a hole; a hole belongs to the component of the pixel on its
 * right, found by a 4-connected labelling, so no point-in-polygon tests are needed.
 *
 * The output is written to PATH.tmp and renamed, so a crash never leaves a half file. */
#include "slide_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

/* Directions: 0 right (+x), 1 down (+y), 2 left, 3 up. */
static const int DX[4] = {1, 0, -1, 0};
static const int DY[4] = {0, 1, 0, -1};

typedef struct {
    int32_t *pts; /* x0,y0,x1,y1,... mask vertex coordinates, corners only, not closed */
    int n, cap;
    int32_t label; /* component of the pixel on the ring's right */
    int64_t area2; /* twice the signed area */
} ring_t;

typedef struct {
    ring_t *r;
    int n, cap;
} rings_t;

static int push_pt(ring_t *r, int32_t x, int32_t y)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        int32_t *p = realloc(r->pts, (size_t)cap * 2 * sizeof *p);
        if (!p) return -1;
        r->pts = p;
        r->cap = cap;
    }
    r->pts[2 * r->n] = x;
    r->pts[2 * r->n + 1] = y;
    r->n++;
    return 0;
}

static void rings_free(rings_t *rs)
{
    for (int i = 0; i < rs->n; i++)
        free(rs->r[i].pts);
    free(rs->r);
}

/* 4-connected labels 1..n of the foreground; 0 = background. */
static int32_t *label_components(const ss_mask_t *m, int32_t *ncomp)
{
    int w = m->width, h = m->height;
    size_t np = (size_t)w * (size_t)h;
    int32_t *lab = calloc(np, sizeof *lab);
    uint32_t *stack = malloc(np * sizeof *stack); /* masks are < 2^32 pixels */
    if (!lab || !stack) {
        free(lab);
        free(stack);
        return NULL;
    }
    int32_t next = 0;
    for (size_t s = 0; s < np; s++) {
        if (!m->data[s] || lab[s]) continue;
        next++;
        size_t top = 0;
        stack[top++] = (uint32_t)s;
        lab[s] = next;
        while (top) {
            size_t p = stack[--top];
            int x = (int)(p % (size_t)w), y = (int)(p / (size_t)w);
            for (int d = 0; d < 4; d++) {
                int xx = x + DX[d], yy = y + DY[d];
                if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
                size_t q = (size_t)yy * (size_t)w + (size_t)xx;
                if (m->data[q] && !lab[q]) {
                    lab[q] = next;
                    stack[top++] = (uint32_t)q;
                }
            }
        }
    }
    free(stack);
    *ncomp = next;
    return lab;
}

static int fg(const ss_mask_t *m, int x, int y)
{
    return x >= 0 && y >= 0 && x < m->width && y < m->height &&
           m->data[(size_t)y * (size_t)m->width + (size_t)x];
}

/* Pixel on the right of edge leaving vertex (vx, vy) in direction d (y down). */
static void right_pixel(int vx, int vy, int d, int *px, int *py)
{
    switch (d) {
    case 0:
        *px = vx;
        *py = vy;
        break; /* going right along a top side: pixel below */
    case 1:
        *px = vx - 1;
        *py = vy;
        break; /* going down a right side: pixel to the left */
    case 2:
        *px = vx - 1;
        *py = vy - 1;
        break; /* going left along a bottom side: pixel above */
    default:
        *px = vx;
        *py = vy - 1;
        break; /* going up a left side: pixel to the right */
    }
}

static int trace(const ss_mask_t *m, rings_t *rs)
{
    int w = m->width, h = m->height;
    size_t vw = (size_t)w + 1, nv = vw * ((size_t)h + 1);
    uint8_t *out = calloc(nv, 1); /* bit d: an unused edge leaves this vertex in direction d */
    if (!out) return -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (!fg(m, x, y)) continue;
            if (!fg(m, x, y - 1)) out[(size_t)y * vw + x] |= 1 << 0;
            if (!fg(m, x + 1, y)) out[(size_t)y * vw + x + 1] |= 1 << 1;
            if (!fg(m, x, y + 1)) out[(size_t)(y + 1) * vw + x + 1] |= 1 << 2;
            if (!fg(m, x - 1, y)) out[(size_t)(y + 1) * vw + x] |= 1 << 3;
        }
    int32_t ncomp = 0;
    int32_t *lab = label_components(m, &ncomp);
    if (!lab) {
        free(out);
        return -1;
    }
    int rc = 0;
    for (size_t v0 = 0; v0 < nv && !rc; v0++) {
        while (out[v0] && !rc) {
            int d0 = 0;
            while (!(out[v0] & (1 << d0)))
                d0++;
            if (rs->n == rs->cap) {
                int cap = rs->cap ? 2 * rs->cap : 64;
                ring_t *p = realloc(rs->r, (size_t)cap * sizeof *p);
                if (!p) {
                    rc = -1;
                    break;
                }
                rs->r = p;
                rs->cap = cap;
            }
            ring_t *r = &rs->r[rs->n++];
            memset(r, 0, sizeof *r);
            int x = (int)(v0 % vw), y = (int)(v0 / vw);
            int px, py;
            right_pixel(x, y, d0, &px, &py);
            r->label = lab[(size_t)py * (size_t)w + (size_t)px];
            int d = d0;
            out[v0] &= (uint8_t) ~(1 << d0);
            if (push_pt(r, x, y)) rc = -1;
            for (;;) {
                x += DX[d];
                y += DY[d];
                size_t v = (size_t)y * vw + (size_t)x;
                /* right turn first, then straight, then left (y down: right of d is d+1) */
                static const int turn[3] = {1, 0, 3};
                int nd = -1, closed = 0;
                for (int k = 0; k < 3; k++) {
                    int c = (d + turn[k]) & 3;
                    if (v == v0 && c == d0) {
                        closed = 1;
                        break;
                    }
                    if (out[v] & (1 << c)) {
                        nd = c;
                        break;
                    }
                }
                if (closed) break;
                if (nd < 0) { /* cannot happen: every vertex has as many out- as in-edges */
                    rc = -1;
                    break;
                }
                out[v] &= (uint8_t) ~(1 << nd);
                if (nd != d && push_pt(r, x, y)) {
                    rc = -1;
                    break;
                }
                d = nd;
            }
            int64_t a = 0;
            for (int i = 0; i < r->n; i++) {
                int j = (i + 1) % r->n;
                a += (int64_t)r->pts[2 * i] * r->pts[2 * j + 1] -
                     (int64_t)r->pts[2 * j] * r->pts[2 * i + 1];
            }
            r->area2 = a;
        }
    }
    free(out);
    free(lab);
    (void)ncomp;
    return rc;
}

static void put_ring(FILE *f, const ss_mask_t *m, const ring_t *r)
{
    fputc('[', f);
    for (int i = 0; i <= r->n; i++) {
        int k = i % r->n; /* GeoJSON rings repeat their first point */
        double x = r->pts[2 * k] * m->scale_x, y = r->pts[2 * k + 1] * m->scale_y;
        if (x > (double)m->slide_width) x = (double)m->slide_width;
        if (y > (double)m->slide_height) y = (double)m->slide_height;
        fprintf(f, "%s[%lld,%lld]", i ? "," : "", (long long)llround(x), (long long)llround(y));
    }
    fputc(']', f);
}

static int cmp_label(const void *a, const void *b)
{
    const ring_t *ra = a, *rb = b;
    if (ra->label != rb->label) return ra->label < rb->label ? -1 : 1;
    /* outer ring (positive area) first within a component */
    return (rb->area2 > 0) - (ra->area2 > 0);
}

int ss_mask_write_geojson(const ss_mask_t *m, const char *path)
{
    rings_t rs = {0};
    if (trace(m, &rs)) {
        rings_free(&rs);
        return ss_error("slide", "out of memory tracing the mask outline for '%s'", path);
    }
    if (rs.n) qsort(rs.r, (size_t)rs.n, sizeof *rs.r, cmp_label);
    size_t len = strlen(path);
    char *tmp = malloc(len + 5);
    if (!tmp) {
        rings_free(&rs);
        return ss_error("slide", "out of memory");
    }
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        ss_error_system("slide", "cannot write '%s'", tmp);
        free(tmp);
        rings_free(&rs);
        return -1;
    }
    fputs("{\"type\":\"FeatureCollection\",\"features\":[", f);
    if (rs.n) {
        fputs("{\"type\":\"Feature\",\"geometry\":{\"type\":\"MultiPolygon\",\"coordinates\":[", f);
        int first = 1;
        for (int i = 0; i < rs.n;) {
            int j = i + 1;
            while (j < rs.n && rs.r[j].label == rs.r[i].label)
                j++;
            fputs(first ? "[" : ",[", f);
            first = 0;
            for (int k = i; k < j; k++) {
                if (k > i) fputc(',', f);
                put_ring(f, m, &rs.r[k]);
            }
            fputc(']', f);
            i = j;
        }
        fprintf(f,
                "]},\"properties\":{\"objectType\":\"annotation\",\"name\":\"Foreground\","
                "\"classification\":{\"name\":\"Foreground\",\"color\":[0,170,0]},"
                "\"isLocked\":false,\"measurements\":{\"mask_mpp\":%.6g,\"mask_pixels\":%lld}}}",
                m->mpp, (long long)m->foreground);
    }
    fputs("]}\n", f);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        ss_error_system("slide", "error writing '%s'", tmp);
        remove(tmp);
        free(tmp);
        rings_free(&rs);
        return -1;
    }
    if (rename(tmp, path)) {
        ss_error_system("slide", "cannot rename '%s' to '%s'", tmp, path);
        remove(tmp);
        free(tmp);
        rings_free(&rs);
        return -1;
    }
    free(tmp);
    rings_free(&rs);
    return 0;
}
