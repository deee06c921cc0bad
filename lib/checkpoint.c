/* checkpoint.c -- being written */
#include "engine.h"
