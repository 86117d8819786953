#ifndef SWIFTQ_CLIBYAML_SHIM_H
#define SWIFTQ_CLIBYAML_SHIM_H

/* The system libyaml (Debian libyaml-dev, pkg-config yaml-0.1): only SwiftqCore's LibYAML.swift imports it. */
#include <yaml.h>

#endif
