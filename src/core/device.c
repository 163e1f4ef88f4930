/* device.c - OpenCL platform/device enumeration, capabilities, and the
 * device-choice rules of CLATTN_DEVICE (README, "Environment variables"):
 * "N", "P:D", or a name substring; else the first GPU, else the first
 * device. */
#include "core/core.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void get_string(cl_device_id d, cl_device_info what, char *buf, size_t size)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, size, buf, NULL) != CL_SUCCESS)
        buf[0] = '\0';
    buf[size - 1] = '\0';
}

static bool has_extension(const char *extensions, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = extensions; (p = strstr(p, name)) != NULL; p += n) {
        bool starts = p == extensions || p[-1] == ' ';
        bool ends = p[n] == '\0' || p[n] == ' ';
        if (starts && ends)
            return true;
    }
    return false;
}

clattn_status clattn__device_query(cl_platform_id platform, cl_device_id device,
                                   clattn_device_info *info)
{
    clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof info->platform_name,
                      info->platform_name, NULL);
    clGetPlatformInfo(platform, CL_PLATFORM_VERSION, sizeof info->platform_version,
                      info->platform_version, NULL);
    info->platform_name[sizeof info->platform_name - 1] = '\0';
    info->platform_version[sizeof info->platform_version - 1] = '\0';
    get_string(device, CL_DEVICE_NAME, info->device_name, sizeof info->device_name);
    get_string(device, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    get_string(device, CL_DEVICE_VERSION, info->device_version, sizeof info->device_version);
    get_string(device, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
    get_string(device, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version,
               sizeof info->opencl_c_version);

    cl_device_type type = 0;
    cl_uint units = 0, clock = 0;
    size_t wg = 0;
    cl_ulong local = 0, global = 0, alloc = 0;
    cl_int err = clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof clock, &clock, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
    if (err != CL_SUCCESS)
        return clattn__fail(NULL, CLATTN_ERR_OPENCL,
                            "clGetDeviceInfo failed for device '%s'", info->device_name);

    info->type = (type & CL_DEVICE_TYPE_GPU)           ? CLATTN_DEVICE_GPU
                 : (type & CL_DEVICE_TYPE_CPU)         ? CLATTN_DEVICE_CPU
                 : (type & CL_DEVICE_TYPE_ACCELERATOR) ? CLATTN_DEVICE_ACCELERATOR
                                                       : CLATTN_DEVICE_OTHER;
    info->compute_units = units;
    info->max_clock_mhz = clock;
    info->max_work_group_size = wg;
    info->local_mem_bytes = local;
    info->global_mem_bytes = global;
    info->max_alloc_bytes = alloc;

    size_t ext_size = 0;
    char *ext = NULL;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size) == CL_SUCCESS &&
        (ext = calloc(ext_size + 1, 1)) != NULL &&
        clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL) == CL_SUCCESS) {
        info->fp16 = has_extension(ext, "cl_khr_fp16");
        info->fp64 = has_extension(ext, "cl_khr_fp64");
        info->subgroups = has_extension(ext, "cl_khr_subgroups") ||
                          has_extension(ext, "cl_intel_subgroups");
    }
    free(ext);
    return CLATTN_OK;
}

/* Discovery is serialised across the process: POCL 3.1 answers
 * clGetDeviceIDs with -1 (CL_DEVICE_NOT_FOUND) to threads that race its
 * device set-up, so 12 of 28 contexts created at once by separate threads
 * failed with "no OpenCL device found". One mutex around the whole listing
 * makes every thread see the finished set-up; listing happens once per
 * context creation, so the lock costs nothing measurable. */
static pthread_mutex_t discovery_lock = PTHREAD_MUTEX_INITIALIZER;

static clattn_status devices_list_locked(clattn__device_ref **refs, int32_t *count);

clattn_status clattn__devices_list(clattn__device_ref **refs, int32_t *count)
{
    pthread_mutex_lock(&discovery_lock);
    clattn_status st = devices_list_locked(refs, count);
    pthread_mutex_unlock(&discovery_lock);
    return st;
}

static clattn_status devices_list_locked(clattn__device_ref **refs, int32_t *count)
{
    *refs = NULL;
    *count = 0;
    cl_uint n_platforms = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &n_platforms);
    /* The ICD loader reports "no platform" as an error; for enumeration
     * that is simply an empty list. */
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || n_platforms == 0)
        return CLATTN_OK;
    if (err != CL_SUCCESS)
        return clattn__fail_cl(NULL, err, "clGetPlatformIDs");

    cl_platform_id *platforms = calloc(n_platforms, sizeof *platforms);
    if (!platforms)
        return clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    err = clGetPlatformIDs(n_platforms, platforms, NULL);
    if (err != CL_SUCCESS) {
        free(platforms);
        return clattn__fail_cl(NULL, err, "clGetPlatformIDs");
    }

    clattn__device_ref *list = NULL;
    int32_t n = 0;
    clattn_status st = CLATTN_OK;
    cl_int first_error = CL_SUCCESS; /* the first real error of a platform */
    for (cl_uint p = 0; p < n_platforms && st == CLATTN_OK; p++) {
        cl_uint n_dev = 0;
        /* Platforms without devices (Clover, Rusticl without RUSTICL_ENABLE)
         * answer CL_DEVICE_NOT_FOUND: skip them. Any other error is kept,
         * and reported as itself when no platform has a device. */
        err = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_dev);
        if (err != CL_SUCCESS && err != CL_DEVICE_NOT_FOUND && first_error == CL_SUCCESS)
            first_error = err;
        if (err != CL_SUCCESS || n_dev == 0)
            continue;
        cl_device_id *devs = calloc(n_dev, sizeof *devs);
        clattn__device_ref *grown = realloc(list, (size_t)(n + (int32_t)n_dev) * sizeof *list);
        if (!devs || !grown) {
            free(devs);
            if (grown)
                list = grown;
            st = clattn__fail(NULL, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
            break;
        }
        list = grown;
        err = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, n_dev, devs, NULL);
        if (err != CL_SUCCESS && first_error == CL_SUCCESS)
            first_error = err;
        if (err == CL_SUCCESS) {
            for (cl_uint d = 0; d < n_dev; d++) {
                clattn__device_ref *r = &list[n];
                memset(r, 0, sizeof *r);
                r->platform = platforms[p];
                r->device = devs[d];
                if (clattn__device_query(platforms[p], devs[d], &r->info) != CLATTN_OK)
                    continue;
                r->info.platform_index = (int32_t)p;
                r->info.device_index = (int32_t)d;
                r->info.flat_index = n;
                n++;
            }
        }
        free(devs);
    }
    free(platforms);
    if (st == CLATTN_OK && n == 0 && first_error != CL_SUCCESS)
        st = clattn__fail_cl(NULL, first_error, "clGetDeviceIDs");
    if (st != CLATTN_OK) {
        free(list);
        return st;
    }
    clattn__clear_thread_error(); /* a skipped device's query error is not ours */
    *refs = list;
    *count = n;
    return CLATTN_OK;
}

static bool contains_nocase(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *h = haystack; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return n == 0;
}

/* Parses a non-negative decimal integer that spans [s, end); -1 if not. */
static long parse_index(const char *s, const char *end)
{
    if (s == end || end - s > 9)
        return -1;
    long v = 0;
    for (const char *p = s; p < end; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

clattn_status clattn__device_pick(const clattn__device_ref *refs, int32_t count,
                                  const char *selector, int32_t *picked)
{
    int32_t found = -1;
    if (!selector) {
        for (int32_t i = 0; i < count && found < 0; i++)
            if (refs[i].info.type == CLATTN_DEVICE_GPU)
                found = i;
        if (found < 0 && count > 0)
            found = 0;
    } else {
        const char *end = selector + strlen(selector);
        const char *colon = strchr(selector, ':');
        long a = parse_index(selector, colon ? colon : end);
        long b = colon ? parse_index(colon + 1, end) : -1;
        if (!colon && a >= 0) {
            if (a < count)
                found = (int32_t)a;
        } else if (colon && a >= 0 && b >= 0) {
            for (int32_t i = 0; i < count && found < 0; i++)
                if (refs[i].info.platform_index == a && refs[i].info.device_index == b)
                    found = i;
        } else {
            /* Names first; then the version and vendor strings, because some
             * implementations carry their common name only there (POCL's
             * platform is "Portable Computing Language", version "... PoCL"). */
            for (int32_t i = 0; i < count && found < 0; i++)
                if (contains_nocase(refs[i].info.platform_name, selector) ||
                    contains_nocase(refs[i].info.device_name, selector))
                    found = i;
            for (int32_t i = 0; i < count && found < 0; i++)
                if (contains_nocase(refs[i].info.platform_version, selector) ||
                    contains_nocase(refs[i].info.vendor, selector))
                    found = i;
        }
    }
    if (found >= 0) {
        *picked = found;
        return CLATTN_OK;
    }

    /* Nothing matched: say what was asked for and list what exists. */
    char list[4096] = "";
    size_t used = 0;
    for (int32_t i = 0; i < count && used < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "\n  %d (%d:%d) %s / %s", i,
                         refs[i].info.platform_index, refs[i].info.device_index,
                         refs[i].info.platform_name, refs[i].info.device_name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (count == 0)
        return clattn__fail(NULL, CLATTN_ERR_NO_DEVICE,
                            "no OpenCL device found%s%s%s (is an ICD installed, e.g. "
                            "pocl-opencl-icd? is OCL_ICD_VENDORS pointing at it?)",
                            selector ? " for selector '" : "", selector ? selector : "",
                            selector ? "'" : "");
    return clattn__fail(NULL, CLATTN_ERR_NO_DEVICE,
                        "no OpenCL device matches selector '%s'; devices found:%s",
                        selector, list);
}

clattn_status clattn_device_count(int32_t *count)
{
    clattn__clear_thread_error();
    if (!count)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "count is NULL");
    clattn__device_ref *refs;
    clattn_status st = clattn__devices_list(&refs, count);
    free(refs);
    return st;
}

clattn_status clattn_device_get_info(int32_t flat_index, clattn_device_info *info)
{
    clattn__clear_thread_error();
    if (!info)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "info is NULL");
    clattn__device_ref *refs;
    int32_t count;
    clattn_status st = clattn__devices_list(&refs, &count);
    if (st != CLATTN_OK)
        return st;
    if (flat_index < 0 || flat_index >= count) {
        free(refs);
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG,
                            "device index %d out of range (%d devices)", flat_index, count);
    }
    *info = refs[flat_index].info;
    free(refs);
    return CLATTN_OK;
}

clattn_status clattn_device_select(const char *selector, int32_t *flat_index)
{
    clattn__clear_thread_error();
    if (!flat_index)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "flat_index is NULL");
    if (!selector)
        selector = clattn__env_device();
    clattn__device_ref *refs;
    int32_t count;
    clattn_status st = clattn__devices_list(&refs, &count);
    if (st == CLATTN_OK)
        st = clattn__device_pick(refs, count, selector, flat_index);
    free(refs);
    return st;
}
