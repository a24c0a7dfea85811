/* Morphology for cell detection: exact Euclidean distance transform (Felzenszwalb–Huttenlocher
 * lower envelope of parabolas), disk morphology through it, connected components, hole
 * filling, and the h-maxima + watershed split of touching objects. Buffers are allocated and
 * freed inside each call. */
#include "morph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

#define BIG 1e20f

/* One 1-D pass: d[i] = min_j (f[j] + (i-j)^2). v, z, scratch of length n / n+1. */
static void edt1d(const float *f, int n, float *d, int *v, float *z)
{
    int k = 0;
    v[0] = 0;
    z[0] = -BIG;
    z[1] = BIG;
    for (int q = 1; q < n; q++) {
        if (f[q] >= BIG) continue;
        if (f[v[k]] >= BIG) { /* envelope empty so far */
            v[k] = q;
            continue;
        }
        float s;
        for (;;) {
            int p = v[k];
            s = ((f[q] + (float)q * q) - (f[p] + (float)p * p)) / (2.0f * (q - p));
            if (s <= z[k] && k > 0) {
                k--;
                continue;
            }
            break;
        }
        if (s <= z[k]) { /* k == 0: q dominates p everywhere */
            v[k] = q;
            continue;
        }
        k++;
        v[k] = q;
        z[k] = s;
        z[k + 1] = BIG;
    }
    if (f[v[0]] >= BIG) {
        for (int q = 0; q < n; q++)
            d[q] = BIG;
        return;
    }
    k = 0;
    for (int q = 0; q < n; q++) {
        while (z[k + 1] < q)
            k++;
        float dq = (float)(q - v[k]);
        d[q] = dq * dq + f[v[k]];
    }
}

int ss_morph_edt(const uint8_t *mask, int w, int h, int target, float *dist2)
{
    int n = w > h ? w : h;
    float *f = calloc((size_t)n + 1, sizeof(float)), *d = calloc((size_t)n + 1, sizeof(float));
    float *z = malloc(sizeof(float) * (n + 1));
    int *v = malloc(sizeof(int) * n);
    if (!f || !d || !z || !v) {
        free(f), free(d), free(z), free(v);
        return ss_error("cells", "out of memory for a %dx%d distance transform", w, h);
    }
    for (int x = 0; x < w; x++) {
        for (int y = 0; y < h; y++)
            f[y] = (mask[(size_t)y * w + x] != 0) == (target != 0) ? 0 : BIG;
        edt1d(f, h, d, v, z);
        for (int y = 0; y < h; y++)
            dist2[(size_t)y * w + x] = d[y];
    }
    for (int y = 0; y < h; y++) {
        float *row = dist2 + (size_t)y * w;
        memcpy(f, row, sizeof(float) * w);
        edt1d(f, w, row, v, z);
    }
    free(f), free(d), free(z), free(v);
    return 0;
}

/* Keeps pixels whose squared distance to `target` pixels compares with r² as asked. */
static int threshold_dist(uint8_t *mask, int w, int h, int target, double r, int keep_within)
{
    size_t n = (size_t)w * h;
    float *d2 = malloc(sizeof(float) * n);
    if (!d2) return ss_error("cells", "out of memory (%dx%d)", w, h);
    if (ss_morph_edt(mask, w, h, target, d2)) {
        free(d2);
        return -1;
    }
    float r2 = (float)(r * r);
    for (size_t i = 0; i < n; i++)
        mask[i] = keep_within ? d2[i] <= r2 : d2[i] > r2;
    free(d2);
    return 0;
}

int ss_morph_dilate(uint8_t *mask, int w, int h, double r)
{
    return r <= 0 ? 0 : threshold_dist(mask, w, h, 1, r, 1);
}

int ss_morph_erode(uint8_t *mask, int w, int h, double r)
{
    return r <= 0 ? 0 : threshold_dist(mask, w, h, 0, r, 0);
}

int ss_morph_open(uint8_t *mask, int w, int h, double r)
{
    return ss_morph_erode(mask, w, h, r) || ss_morph_dilate(mask, w, h, r);
}

static int label_conn(const uint8_t *mask, int w, int h, uint8_t value, int conn8, int32_t *labels)
{
    size_t n = (size_t)w * h;
    int32_t *stack = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!stack) return ss_error("cells", "out of memory labelling %dx%d", w, h);
    memset(labels, 0, sizeof(int32_t) * n);
    int next = 0;
    for (size_t s = 0; s < n; s++) {
        if (mask[s] != value || labels[s]) continue;
        labels[s] = ++next;
        size_t top = 0;
        stack[top++] = (int32_t)s;
        while (top) {
            int32_t p = stack[--top];
            int px = p % w, py = p / w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    if (!dx && !dy) continue;
                    if (!conn8 && dx && dy) continue;
                    int qx = px + dx, qy = py + dy;
                    if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
                    size_t q = (size_t)qy * w + qx;
                    if (mask[q] != value || labels[q]) continue;
                    labels[q] = next;
                    stack[top++] = (int32_t)q;
                }
        }
    }
    free(stack);
    return next;
}

int ss_morph_label(const uint8_t *mask, int w, int h, int32_t *labels)
{
    return label_conn(mask, w, h, 1, 1, labels);
}

int ss_morph_fill_holes(uint8_t *mask, int w, int h, double max_area)
{
    size_t n = (size_t)w * h;
    int32_t *lab = malloc(sizeof(int32_t) * n);
    if (!lab) return ss_error("cells", "out of memory filling holes");
    /* Background is 4-connected so that it cannot leak diagonally through an 8-connected rim. */
    int nl = label_conn(mask, w, h, 0, 0, lab);
    if (nl < 0) {
        free(lab);
        return -1;
    }
    size_t *area = calloc((size_t)nl + 1, sizeof(size_t));
    uint8_t *border = calloc((size_t)nl + 1, 1);
    if (!area || !border) {
        free(lab), free(area), free(border);
        return ss_error("cells", "out of memory filling holes");
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int32_t l = lab[(size_t)y * w + x];
            if (!l) continue;
            area[l]++;
            if (x == 0 || y == 0 || x == w - 1 || y == h - 1) border[l] = 1;
        }
    for (size_t i = 0; i < n; i++) {
        int32_t l = lab[i];
        if (l && !border[l] && (double)area[l] <= max_area) mask[i] = 1;
    }
    free(lab), free(area), free(border);
    return 0;
}

/* Max-heap of (key, pixel index). */
typedef struct {
    float *key;
    int32_t *idx;
    size_t n, cap;
} heap_t;

static int heap_push(heap_t *hp, float k, int32_t i)
{
    if (hp->n == hp->cap) {
        size_t cap = hp->cap ? hp->cap * 2 : 1024;
        float *nk = realloc(hp->key, sizeof(float) * cap);
        if (!nk) return -1;
        hp->key = nk;
        int32_t *ni = realloc(hp->idx, sizeof(int32_t) * cap);
        if (!ni) return -1;
        hp->idx = ni;
        hp->cap = cap;
    }
    size_t c = hp->n++;
    while (c > 0) {
        size_t p = (c - 1) / 2;
        if (hp->key[p] >= k) break;
        hp->key[c] = hp->key[p];
        hp->idx[c] = hp->idx[p];
        c = p;
    }
    hp->key[c] = k;
    hp->idx[c] = i;
    return 0;
}

static void heap_pop(heap_t *hp, float *k, int32_t *i)
{
    *k = hp->key[0];
    *i = hp->idx[0];
    float lk = hp->key[--hp->n];
    int32_t li = hp->idx[hp->n];
    size_t c = 0;
    for (;;) {
        size_t l = 2 * c + 1;
        if (l >= hp->n) break;
        if (l + 1 < hp->n && hp->key[l + 1] > hp->key[l]) l++;
        if (hp->key[l] <= lk) break;
        hp->key[c] = hp->key[l];
        hp->idx[c] = hp->idx[l];
        c = l;
    }
    hp->key[c] = lk;
    hp->idx[c] = li;
}

static const int DX[8] = {-1, 0, 1, -1, 1, -1, 0, 1};
static const int DY[8] = {-1, -1, -1, 0, 0, 1, 1, 1};

int ss_morph_split(const uint8_t *mask, int w, int h, double depth, int32_t *labels)
{
    size_t n = (size_t)w * h;
    float *f = malloc(sizeof(float) * n), *rec = malloc(sizeof(float) * n);
    uint8_t *top = calloc(n ? n : 1, 1);
    heap_t hp = {0};
    int result = -1;
    if (!f || !rec || !top) {
        ss_error("cells", "out of memory splitting objects (%dx%d)", w, h);
        goto done;
    }
    if (ss_morph_edt(mask, w, h, 0, f)) goto done;
    for (size_t i = 0; i < n; i++)
        f[i] = mask[i] ? sqrtf(f[i] >= BIG ? 1e12f : f[i]) : 0;

    /* h-maxima: reconstruction by dilation of f - depth under f; the domes' tops are where
     * f - rec reaches depth. Propagated greatest-first, like Dijkstra on the max-min path. */
    float hd = (float)depth;
    for (size_t i = 0; i < n; i++) {
        rec[i] = mask[i] ? f[i] - hd : -BIG;
        if (mask[i] && heap_push(&hp, rec[i], (int32_t)i)) goto oom;
    }
    while (hp.n) {
        float k;
        int32_t p;
        heap_pop(&hp, &k, &p);
        if (k < rec[p]) continue;
        int px = p % w, py = p / w;
        for (int d = 0; d < 8; d++) {
            int qx = px + DX[d], qy = py + DY[d];
            if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
            size_t q = (size_t)qy * w + qx;
            if (!mask[q]) continue;
            float v = rec[p] < f[q] ? rec[p] : f[q];
            if (v > rec[q]) {
                rec[q] = v;
                if (heap_push(&hp, v, (int32_t)q)) goto oom;
            }
        }
    }
    /* Markers are the regional maxima of rec: the plateau around each dome top. Tops of equal
     * height inside one dome (common on a discrete distance map) share a plateau and so one
     * marker; rec values on a plateau are copies, so equality is exact. */
    for (size_t i = 0; i < n; i++)
        top[i] = mask[i] && f[i] - rec[i] >= hd - 1e-3f;
    memset(labels, 0, sizeof(int32_t) * n);
    int32_t *stack = (int32_t *)hp.idx; /* reuse: the heap is empty and large enough */
    if (hp.cap < n) {
        stack = realloc(hp.idx, sizeof(int32_t) * (n ? n : 1));
        if (!stack) goto oom;
        hp.idx = stack;
    }
    int nm = 0;
    for (size_t s = 0; s < n; s++) {
        if (!top[s] || labels[s]) continue;
        labels[s] = ++nm;
        size_t sp = 0;
        stack[sp++] = (int32_t)s;
        float level = rec[s];
        while (sp) {
            int32_t p = stack[--sp];
            int px = p % w, py = p / w;
            for (int d = 0; d < 8; d++) {
                int qx = px + DX[d], qy = py + DY[d];
                if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
                size_t q = (size_t)qy * w + qx;
                if (!mask[q] || labels[q] || rec[q] != level) continue;
                labels[q] = nm;
                stack[sp++] = (int32_t)q;
            }
        }
    }

    /* Watershed on -f from the markers: the highest unlabelled neighbour is claimed first. */
    for (size_t i = 0; i < n; i++)
        if (labels[i] && heap_push(&hp, f[i], (int32_t)i)) goto oom;
    while (hp.n) {
        float k;
        int32_t p;
        heap_pop(&hp, &k, &p);
        int px = p % w, py = p / w;
        for (int d = 0; d < 8; d++) {
            int qx = px + DX[d], qy = py + DY[d];
            if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
            size_t q = (size_t)qy * w + qx;
            if (!mask[q] || labels[q]) continue;
            labels[q] = labels[p];
            if (heap_push(&hp, f[q], (int32_t)q)) goto oom;
        }
    }
    result = nm;
    goto done;
oom:
    ss_error("cells", "out of memory in the watershed (%dx%d)", w, h);
done:
    free(f), free(rec), free(top), free(hp.key), free(hp.idx);
    return result;
}
