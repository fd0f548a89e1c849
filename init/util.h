/* init/'s modules include the shared helpers by their short name; they live in lib/ so
 * that measured-boot/ and the host tool need nothing from init/. */
#pragma once

#include "../lib/util.h"
