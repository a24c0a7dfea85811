/* Crops and pictures of cells: a centred fixed-size crop, circle/rectangle drawing into an RGB
 * buffer (clipped), the detection overlay and the crop gallery. Buffers are the caller's except
 * the gallery canvas, which lives only inside ss_cells_gallery_save. */
#include "slidestream/cells.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

void ss_cells_crop(const uint8_t *rgb, int w, int h, double cx, double cy, int size, uint8_t *out)
{
    int x0 = (int)floor(cx - size / 2.0 + 0.5), y0 = (int)floor(cy - size / 2.0 + 0.5);
    for (int y = 0; y < size; y++) {
        int sy = y0 + y;
        sy = sy < 0 ? 0 : sy >= h ? h - 1 : sy;
        for (int x = 0; x < size; x++) {
            int sx = x0 + x;
            sx = sx < 0 ? 0 : sx >= w ? w - 1 : sx;
            memcpy(out + ((size_t)y * size + x) * 3, rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    }
}

static void put(uint8_t *rgb, int w, int h, int x, int y, const uint8_t c[3])
{
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    memcpy(rgb + ((size_t)y * w + x) * 3, c, 3);
}

void ss_draw_circle(uint8_t *rgb, int w, int h, double cx, double cy, double r, int thickness,
                    const uint8_t color[3])
{
    if (thickness < 1) thickness = 1;
    double ro = r + thickness / 2.0, ri = r - thickness / 2.0;
    if (ri < 0) ri = 0;
    int xa = (int)floor(cx - ro), xb = (int)ceil(cx + ro);
    int ya = (int)floor(cy - ro), yb = (int)ceil(cy + ro);
    if (xa < 0) xa = 0;
    if (ya < 0) ya = 0;
    if (xb >= w) xb = w - 1;
    if (yb >= h) yb = h - 1;
    for (int y = ya; y <= yb; y++)
        for (int x = xa; x <= xb; x++) {
            double d = hypot(x - cx, y - cy);
            if (d >= ri && d <= ro) put(rgb, w, h, x, y, color);
        }
}

void ss_draw_rect(uint8_t *rgb, int w, int h, int x, int y, int bw, int bh, int thickness,
                  const uint8_t color[3])
{
    for (int t = 0; t < thickness; t++) {
        for (int i = x; i < x + bw; i++) {
            put(rgb, w, h, i, y + t, color);
            put(rgb, w, h, i, y + bh - 1 - t, color);
        }
        for (int j = y; j < y + bh; j++) {
            put(rgb, w, h, x + t, j, color);
            put(rgb, w, h, x + bw - 1 - t, j, color);
        }
    }
}

void ss_cells_draw_overlay(uint8_t *rgb, int w, int h, const ss_cell_t *cells, size_t n,
                           double scale)
{
    static const uint8_t blue[3] = {20, 60, 255}, green[3] = {0, 190, 60};
    int th = w > 1500 ? 3 : 2;
    for (size_t i = 0; i < n; i++) {
        const ss_cell_t *c = &cells[i];
        double r = 0.5 * sqrt((double)c->bbox_w * c->bbox_w + (double)c->bbox_h * c->bbox_h) /
                   sqrt(2.0) * scale;
        if (r < 3) r = 3;
        ss_draw_circle(rgb, w, h, c->x * scale, c->y * scale, r, th,
                       c->kind == SS_CELL_RED ? green : blue);
    }
}

int ss_cells_gallery_save(const char *path, const uint8_t *crops, size_t n, int size, int cols)
{
    if (size <= 0 || cols <= 0)
        return ss_error("cells", "gallery: invalid size %d or columns %d", size, cols);
    if (n == 0) return ss_error("cells", "gallery %s: no cells to show", path);
    const int gut = 2;
    size_t rows = (n + cols - 1) / cols;
    int ncol = n < (size_t)cols ? (int)n : cols;
    size_t W = (size_t)ncol * (size + gut) + gut, H = rows * (size + gut) + gut;
    if (W * H > (size_t)1 << 28)
        return ss_error("cells", "gallery %s too large (%zu cells)", path, n);
    uint8_t *canvas = malloc(W * H * 3);
    if (!canvas) return ss_error("cells", "out of memory for gallery %s", path);
    memset(canvas, 255, W * H * 3);
    for (size_t i = 0; i < n; i++) {
        size_t gx = gut + (i % cols) * (size + gut), gy = gut + (i / cols) * (size + gut);
        for (int y = 0; y < size; y++)
            memcpy(canvas + ((gy + y) * W + gx) * 3, crops + ((i * size + y) * size) * 3,
                   (size_t)size * 3);
    }
    int rc = ss_image_save_rgb(path, canvas, (int)W, (int)H);
    free(canvas);
    return rc;
}
