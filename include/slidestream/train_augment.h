/* slidestream — the encoder trainer's augmentations (SLAM-AGS, specs/methods.md §6.3), seeded
 * and reproducible per (seed, epoch, cell, view).
 *
 * The reference (PIL, torchvision) builds a positive view as
 *   RandomCrop(S) -> RandomHorizontalFlip(0.5) -> RandomApply([ColorJitter(b, c, s, h)], 0.8)
 *   -> RandomApply([rotate 90], 0.8) -> ToTensor -> Normalize(mean, std)
 * ("simclr"), and a negative cell's first view as CenterCrop(S) -> ToTensor -> Normalize
 * ("center"); its second view is a simclr one.
 *
 * A view is two steps. ss_aug_draw turns (config, kind, sizes, seed, epoch, cell, view) into an
 * ss_aug_params_t, hashing the four keys into its own RNG state, so a view's parameters never
 * depend on the order in which cells are processed or on threads. ss_aug_apply then makes the
 * (3, S, S) normalised float input from the 8-bit crop; it allocates nothing.
 *
 * ss_aug_apply works like torchvision's tensor functions (torchvision.transforms.functional on
 * a float32 tensor in [0, 1]), not like PIL: values stay in float after the crop, where PIL
 * rounds to 8 bits after every jitter op. Op by op, with x in [0, 1]:
 *   brightness f  x = clamp(f x)
 *   contrast f    x = clamp(f x + (1 - f) m), m = mean over the crop of the grayscale image
 *   saturation f  x = clamp(f x + (1 - f) gray), per pixel
 *   hue h         RGB -> HSV, H = (H + h) mod 1, HSV -> RGB
 * with gray = 0.2989 R + 0.587 G + 0.114 B (torchvision's weights; PIL's are 0.299/0.587/0.114
 * in fixed point). Jitter ops run in the drawn order, as ColorJitter applies them in a random
 * permutation. A view without jitter is normalised straight from the 8-bit values with
 * ss_nn_normalise_u8, so it carries exactly the bits the encoder sees at inference; a jittered
 * one ends with ss_nn_normalise_f32, torchvision's Normalize. Measured against torchvision:
 * see tests/train_augment/parity.py.
 *
 * The centre crop's offset is floor((n - S) / 2) in each direction, the encoder's rule
 * (ss_nn_centre_offset). torchvision's CenterCrop uses int(round((n - S) / 2.0)), rounding half
 * to even: the two agree when n - S is even (250-pixel cells at S = 224), and differ by one pixel
 * when n - S = 4k + 3.
 */
#ifndef SLIDESTREAM_TRAIN_AUGMENT_H
#define SLIDESTREAM_TRAIN_AUGMENT_H

#include <stdint.h>

typedef enum {
    SS_AUG_CENTER, /* centre crop only: a negative cell's first view */
    SS_AUG_SIMCLR  /* random crop, flip, colour jitter, rotation */
} ss_aug_kind_t;

typedef enum { SS_AUG_BRIGHTNESS, SS_AUG_CONTRAST, SS_AUG_SATURATION, SS_AUG_HUE } ss_aug_op_t;

/* What the simclr views draw from. */
typedef struct {
    /* ColorJitter strengths: brightness, contrast and saturation factors come from
     * [1 - s, 1 + s] (s in [0, 1]), the hue shift from [-h, h] (h in [0, 0.5]). An op whose
     * strength is 0 is left out of the sequence, as torchvision leaves it out. */
    float brightness, contrast, saturation, hue;
    float p_flip, p_jitter, p_rot; /* probabilities in [0, 1] */
} ss_aug_config_t;

/* Everything one view's augmentation needs. */
typedef struct {
    int x0, y0; /* the crop's top-left corner in the source */
    int hflip;  /* 1: mirror left-right after the crop */
    int jitter; /* 1: apply ops[0 .. n_ops) in that order */
    int n_ops;
    ss_aug_op_t ops[4];
    float brightness, contrast, saturation; /* factors, >= 0 (1 = unchanged; 1 when !jitter) */
    float hue;                              /* shift in [-0.5, 0.5] of a turn */
    int rot90; /* 1: rotate by 90 degrees counter-clockwise last (torchvision's rotate(x, 90)) */
} ss_aug_params_t;

/* Strengths 0.1 each, p_flip 0.5, p_jitter 0.8, p_rot 0.8 (the SLAM-AGS reference). */
ss_aug_config_t ss_aug_config_default(void);

/* One view's parameters for a source of w x h pixels and crops of S: a function of (cfg, kind,
 * w, h, S, seed, epoch, cell, view) only. `cell` should be the cell's stable id (its index in the
 * crop store), not its position in a batch. Center views draw nothing (cfg may be NULL): the
 * centred crop and no other op. Simclr views: crop offsets uniform over [0, w - S] x
 * [0, h - S], then each probability and jitter factor. -1 (domain "train.augment") on a source
 * smaller than S or a configuration out of range. */
int ss_aug_draw(const ss_aug_config_t *cfg, ss_aug_kind_t kind, int w, int h, int S, uint64_t seed,
                uint64_t epoch, uint64_t cell, uint64_t view, ss_aug_params_t *p);

/* rgb (h, w, 3) interleaved 8-bit -> out (3, S, S) float, (x - mean) / std after the ops of p.
 * Works in out itself: no scratch, no allocation. Deterministic: the same p and pixels give the
 * same bits on every call and thread. -1 (domain "train.augment") when the source is smaller
 * than S (naming both sizes), the crop does not fit, a factor is out of range or a std is not
 * positive. */
int ss_aug_apply(const ss_aug_params_t *p, const uint8_t *rgb, int w, int h, int S,
                 const double mean[3], const double std[3], float *out);

/* ss_aug_draw then ss_aug_apply: the trainer's call for one view. */
int ss_aug_view(const ss_aug_config_t *cfg, ss_aug_kind_t kind, const uint8_t *rgb, int w, int h,
                int S, uint64_t seed, uint64_t epoch, uint64_t cell, uint64_t view,
                const double mean[3], const double std[3], float *out);

#endif
