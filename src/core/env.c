/* env.c - the one place that reads environment variables
 * (docs/ARCHITECTURE.md, "Layers"; the README lists them). Everything
 * else receives their values as arguments, so the library's behaviour can
 * be followed from its inputs. */
#include "core/core.h"

#include <stdlib.h>

static const char *nonempty(const char *name)
{
    const char *v = getenv(name);
    return (v && v[0]) ? v : NULL;
}

const char *clattn__env_device(void) { return nonempty("CLATTN_DEVICE"); }
const char *clattn__env_cache_dir(void) { return nonempty("CLATTN_CACHE_DIR"); }
const char *clattn__env_kernel_dir(void) { return nonempty("CLATTN_KERNEL_DIR"); }
const char *clattn__env_xdg_cache_home(void) { return nonempty("XDG_CACHE_HOME"); }
const char *clattn__env_home(void) { return nonempty("HOME"); }
const char *clattn__env_attention_kernel(void) { return nonempty("CLATTN_ATTENTION_KERNEL"); }
const char *clattn__env_gemm_kernel(void) { return nonempty("CLATTN_GEMM_KERNEL"); }
