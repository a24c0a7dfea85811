/* Whole-slide thumbnails: an area-averaged RGB picture of the slide at a chosen resolution or
 * longest side, for the foreground mask and for overlays. The caller owns the ss_thumb_t. */
#include "slide_internal.h"

#include <math.h>
#include <stdlib.h>

#include "slidestream/error.h"

ss_thumb_t *ss_slide_thumbnail_mpp(ss_slide_t *s, double mpp)
{
    const ss_slide_info_t *in = &s->info;
    if (!(mpp > 0) || !isfinite(mpp)) {
        ss_error("slide", "'%s': bad thumbnail resolution %g um/px", s->path, mpp);
        return NULL;
    }
    double sx = mpp / in->mpp_x, sy = mpp / in->mpp_y; /* level-0 px per thumbnail px */
    double fw = ceil((double)in->width / sx - 1e-9), fh = ceil((double)in->height / sy - 1e-9);
    if (fw < 1) fw = 1;
    if (fh < 1) fh = 1;
    if (fw > 65536 || fh > 65536 || fw * fh > 4e8) {
        ss_error("slide",
                 "'%s': thumbnail at %g um/px would be %.0fx%.0f pixels; use a coarser "
                 "resolution",
                 s->path, mpp, fw, fh);
        return NULL;
    }
    ss_thumb_t *t = calloc(1, sizeof *t);
    if (!t) {
        ss_error("slide", "out of memory");
        return NULL;
    }
    t->width = (int)fw;
    t->height = (int)fh;
    t->mpp = mpp;
    t->scale_x = sx;
    t->scale_y = sy;
    t->rgb = malloc((size_t)t->width * (size_t)t->height * 3);
    if (!t->rgb) {
        ss_error("slide", "out of memory (thumbnail %dx%d)", t->width, t->height);
        ss_thumb_destroy(&t);
        return NULL;
    }
    if (ss_slide_read_region(s, 0, 0, mpp, t->width, t->height, t->rgb)) {
        ss_error("slide", "'%s': cannot make a thumbnail", s->path);
        ss_thumb_destroy(&t);
        return NULL;
    }
    return t;
}

ss_thumb_t *ss_slide_thumbnail(ss_slide_t *s, int max_size)
{
    if (max_size < 1) {
        ss_error("slide", "bad thumbnail size %d", max_size);
        return NULL;
    }
    const ss_slide_info_t *in = &s->info;
    double ext = fmax((double)in->width * in->mpp_x, (double)in->height * in->mpp_y);
    /* A hair coarser than exact so rounding never yields max_size + 1 pixels. */
    double mpp = ext / max_size * (1 + 1e-9);
    return ss_slide_thumbnail_mpp(s, mpp);
}

void ss_thumb_destroy(ss_thumb_t **tp)
{
    if (!tp || !*tp) return;
    free((*tp)->rgb);
    free(*tp);
    *tp = NULL;
}
