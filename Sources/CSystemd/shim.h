#ifndef SWIFTQ_CSYSTEMD_SHIM_H
#define SWIFTQ_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#endif
