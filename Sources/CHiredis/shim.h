#ifndef SWIFTQ_CHIREDIS_SHIM_H
#define SWIFTQ_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
