/* Internal to lib/mil: the architectures' operation tables. An architecture's file defines
 * its table; mil.c lists it in `archs`. */
#ifndef SS_MIL_INTERNAL_H
#define SS_MIL_INTERNAL_H

#include "slidestream/mil.h"

extern const ss_mil_ops_t ss_mil_abmil_ops;
extern const ss_mil_ops_t ss_mil_pamil_ops;
extern const ss_mil_ops_t ss_mil_abmilx_ops;
extern const ss_mil_ops_t ss_mil_dtfd_ops;

#endif
