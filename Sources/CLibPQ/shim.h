#ifndef LOADSTAR_CLIBPQ_SHIM_H
#define LOADSTAR_CLIBPQ_SHIM_H
#include <libpq-fe.h>   /* -I/usr/include/postgresql comes from pkg-config */
#endif
