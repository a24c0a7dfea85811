/* Plain-image I/O for cells, through libvips: load any format libvips sniffs (by content, not by
 * suffix) as packed 8-bit RGB, and save packed RGB by the path's suffix. Buffers returned to the
 * caller come from malloc; libvips objects never escape this file. */
#include "slidestream/cells.h"

#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "slidestream/error.h"

static int vips_ready(void)
{
    /* vips_init is idempotent; the slide module may already have started libvips. */
    if (VIPS_INIT("slidestream")) {
        ss_error("cells", "libvips failed to start: %s", vips_error_buffer());
        vips_error_clear();
        return -1;
    }
    return 0;
}

static int vips_fail(const char *what, const char *path)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vips_error_buffer());
    size_t l = strlen(msg);
    while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
        msg[--l] = '\0';
    for (char *c = msg; *c; c++)
        if (*c == '\n') *c = ' ';
    vips_error_clear();
    return ss_error("cells", "%s %s: %s", what, path, msg);
}

int ss_image_load_rgb(const char *path, uint8_t **rgb, int *w, int *h)
{
    *rgb = NULL;
    if (vips_ready()) return -1;
    VipsImage *t[5] = {0};
    int rc = -1;
    t[0] = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!t[0]) return vips_fail("cannot open image", path);
    VipsImage *cur = t[0];
    if (vips_image_hasalpha(cur)) {
        VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
        int bad = vips_flatten(cur, &t[1], "background", white, NULL);
        vips_area_unref(VIPS_AREA(white));
        if (bad) goto fail;
        cur = t[1];
    }
    if (vips_colourspace(cur, &t[2], VIPS_INTERPRETATION_sRGB, NULL)) goto fail;
    cur = t[2];
    if (vips_cast_uchar(cur, &t[3], NULL)) goto fail;
    cur = t[3];
    if (cur->Bands < 3) {
        ss_error("cells", "image %s has %d bands after conversion to sRGB", path, cur->Bands);
        goto done;
    }
    if (vips_extract_band(cur, &t[4], 0, "n", 3, NULL)) goto fail;
    cur = t[4];
    size_t size = 0;
    void *mem = vips_image_write_to_memory(cur, &size);
    if (!mem) goto fail;
    size_t want = (size_t)cur->Xsize * cur->Ysize * 3;
    if (size != want) {
        g_free(mem);
        ss_error("cells", "image %s: unexpected pixel buffer size", path);
        goto done;
    }
    *rgb = malloc(want);
    if (!*rgb) {
        g_free(mem);
        ss_error("cells", "out of memory loading %s", path);
        goto done;
    }
    memcpy(*rgb, mem, want);
    g_free(mem);
    *w = cur->Xsize;
    *h = cur->Ysize;
    rc = 0;
    goto done;
fail:
    vips_fail("cannot decode image", path);
done:
    for (int i = 4; i >= 0; i--)
        if (t[i]) g_object_unref(t[i]);
    return rc;
}

int ss_image_save_rgb(const char *path, const uint8_t *rgb, int w, int h)
{
    if (vips_ready()) return -1;
    VipsImage *a =
        vips_image_new_from_memory_copy(rgb, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
    if (!a) return vips_fail("cannot wrap pixels for", path);
    VipsImage *b = NULL;
    int rc = 0;
    if (vips_copy(a, &b, "interpretation", VIPS_INTERPRETATION_sRGB, NULL) ||
        vips_image_write_to_file(b, path, NULL))
        rc = vips_fail("cannot write image", path);
    if (b) g_object_unref(b);
    g_object_unref(a);
    return rc;
}
