/* nn.optim — optimiser steps against the PyTorch update rules evaluated by hand in double,
 * the schedules at known points, and clip_grad_norm_ semantics. */
#include <stdlib.h>

#include "../check.h"
#include "slidestream/nn_optim.h"

int main(void)
{
    /* SGD, momentum 0.9, wd 0.1, lr 0.5, two steps on p = (1, -2) with g = (0.5, 0.25) then
     * (-1, 1). Step 1: d = g + wd p = (0.6, 0.05); buf = d; p = (0.7, -2.025).
     * Step 2: d = (-1 + 0.07, 1 - 0.2025) = (-0.93, 0.7975); buf = 0.9*(0.6,0.05) + d
     *       = (-0.39, 0.8425); p = (0.7 + 0.195, -2.025 - 0.42125) = (0.895, -2.44625). */
    {
        ss_optim_config_t c = ss_optim_config_default(SS_OPTIM_SGD, 0.5f);
        c.momentum = 0.9f, c.weight_decay = 0.1f;
        ss_optim_t *o = ss_optim_new(&c, 2);
        float p[2] = {1, -2}, g1[2] = {0.5f, 0.25f}, g2[2] = {-1, 1};
        ss_optim_step(o, p, g1, c.lr);
        CHECK_NEAR(p[0], 0.7, 1e-6, 0);
        CHECK_NEAR(p[1], -2.025, 1e-6, 0);
        ss_optim_step(o, p, g2, c.lr);
        CHECK_NEAR(p[0], 0.895, 1e-6, 0);
        CHECK_NEAR(p[1], -2.44625, 1e-6, 0);
        ss_optim_destroy(&o);
        CHECK(o == NULL, "destroy sets NULL");
    }
    /* Adam / AdamW: three steps against the formula in double. */
    for (int kind = SS_OPTIM_ADAM; kind <= SS_OPTIM_ADAMW; kind++) {
        ss_optim_config_t c = ss_optim_config_default((ss_optim_kind_t)kind, 1e-2f);
        c.weight_decay = 0.05f;
        ss_optim_t *o = ss_optim_new(&c, 3);
        float p[3] = {0.3f, -1.0f, 2.0f};
        double pd[3] = {0.3, -1.0, 2.0}, m[3] = {0}, v[3] = {0};
        float gs[3][3] = {{0.1f, -0.2f, 0.3f}, {-0.5f, 0.1f, 0.0f}, {1.0f, 1.0f, -1.0f}};
        for (int t = 1; t <= 3; t++) {
            ss_optim_step(o, p, gs[t - 1], c.lr);
            for (int i = 0; i < 3; i++) {
                double g = gs[t - 1][i];
                if (kind == SS_OPTIM_ADAMW)
                    pd[i] *= 1 - 1e-2 * 0.05;
                else
                    g += 0.05 * pd[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                double mh = m[i] / (1 - pow(0.9, t));
                double den = sqrt(v[i]) / sqrt(1 - pow(0.999, t)) + 1e-8;
                pd[i] -= 1e-2 * mh / den;
            }
        }
        for (int i = 0; i < 3; i++)
            CHECK_NEAR(p[i], pd[i], 1e-6, 1e-6);
        ss_optim_destroy(&o);
    }
    /* Schedules. */
    CHECK_NEAR(ss_lr_warmup_cosine(0, 10, 110, 1.0, 0.0, 0.0), 0.0, 1e-12, 0);
    CHECK_NEAR(ss_lr_warmup_cosine(5, 10, 110, 1.0, 0.0, 0.0), 0.5, 1e-12, 0);
    CHECK_NEAR(ss_lr_warmup_cosine(10, 10, 110, 1.0, 0.0, 0.0), 1.0, 1e-12, 0);
    CHECK_NEAR(ss_lr_warmup_cosine(60, 10, 110, 1.0, 0.0, 0.1), 0.55, 1e-12, 0);
    CHECK_NEAR(ss_lr_warmup_cosine(110, 10, 110, 1.0, 0.0, 0.1), 0.1, 1e-12, 0);
    CHECK_NEAR(ss_lr_warmup_cosine(500, 10, 110, 1.0, 0.0, 0.1), 0.1, 1e-12, 0);
    CHECK_NEAR(ss_lr_slam_ags_factor(0, 10, 150), 0.1, 1e-12, 0);
    CHECK_NEAR(ss_lr_slam_ags_factor(9, 10, 150), 1.0, 1e-12, 0);
    CHECK_NEAR(ss_lr_slam_ags_factor(10, 10, 150), 1.0, 1e-12, 0);
    CHECK_NEAR(ss_lr_slam_ags_factor(80, 10, 150), 0.5, 1e-12, 0);
    CHECK_NEAR(ss_lr_slam_ags_factor(149, 10, 150), 0.5 * (1 + cos(M_PI * 139 / 140)), 1e-12, 0);
    /* clip_grad_norm_: |(3,4)| = 5; max 1 scales by 1/(5 + 1e-6); max 10 leaves it. */
    {
        float g[2] = {3, 4};
        CHECK_NEAR(ss_clip_grad_norm(g, 2, 10.0), 5.0, 1e-9, 0);
        CHECK_NEAR(g[0], 3.0, 0, 0);
        CHECK_NEAR(ss_clip_grad_norm(g, 2, 1.0), 5.0, 1e-9, 0);
        CHECK_NEAR(g[0], 3.0 / (5 + 1e-6), 1e-7, 0);
        CHECK_NEAR(g[1], 4.0 / (5 + 1e-6), 1e-7, 0);
    }
    return check_exit("nn.optim");
}
