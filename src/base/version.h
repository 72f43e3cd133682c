// version.h: the version of gemma3.c (the library and the program).
#ifndef G3_VERSION_H
#define G3_VERSION_H

#define G3_VERSION "0.1.0"

#endif
