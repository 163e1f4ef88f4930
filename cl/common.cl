/* common.cl - included at the top of every clattn program.
 *
 * Host-set macros (context.c): CLATTN_DEVICE_CPU, CLATTN_LOCAL_MEM,
 * CLATTN_MAX_WG. Defaults here let a file build without them. */
#ifndef CLATTN_DEVICE_CPU
#define CLATTN_DEVICE_CPU 0
#endif

/* Masked scores use a large finite negative rather than -INFINITY, so that
 * online-softmax arithmetic (max, subtraction, exp) never meets inf - inf. */
#define CLATTN_NEG_LARGE (-3.0e38f)
