/* lib/slide private declarations shared by slide.c, read.c, thumb.c, mask.c and tiler.c.
 * The slide handle's fields live here; nothing outside lib/slide sees them. */
#ifndef SS_SLIDE_INTERNAL_H
#define SS_SLIDE_INTERNAL_H

#include <openslide/openslide.h>
#include <vips/vips.h>

#include "slidestream/slide.h"

/* Consecutive failed reads (each followed by a reopen) before a slide is given up. */
#define SS_SLIDE_MAX_REOPENS 16

typedef enum { SS_BACKEND_OPENSLIDE, SS_BACKEND_VIPS } ss_backend_t;

struct ss_slide {
    ss_slide_info_t info;
    ss_backend_t backend;
    char *path;
    char *format;
    char mpp_source[96];
    /* levels */
    int nlevels;
    int64_t *lw, *lh; /* [nlevels] */
    double *ld;       /* [nlevels] downsample */
    /* OpenSlide */
    openslide_t *osr;
    int dead;       /* 1: no more reads (reopen budget spent or reopen failed) */
    int reopens;    /* reopens since the last successful read */
    uint32_t *argb; /* scratch for openslide_read_region */
    size_t argb_cap;
    /* libvips: 3-band uchar sRGB view of the image, and a region on it */
    VipsImage *img;
    VipsRegion *region;
};

/* Reads the level rectangle [lx, lx+w) x [ly, ly+h) (level pixels, may stick out of the level)
 * into rgb [h][w][3]; outside the level is white. Errors name the slide and region. */
int ss_slide_read_level_px(ss_slide_t *s, int level, int64_t lx, int64_t ly, int w, int h,
                           uint8_t *rgb);

/* One-time libvips start-up (thread-safe). */
int ss_slide_vips_init(void);

#endif
