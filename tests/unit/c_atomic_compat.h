// c_atomic_compat.h — lets C++ tests include libsvc's internal headers that
// use C11 `_Atomic T` fields (region.h, wait.h). g++ 12 has no C-compatible
// <stdatomic.h>, so before those headers we stand in a layout-identical
// volatile type (same size and alignment for the integer types on the ABIs
// we build for) and map the C11 generic functions the tests use onto the
// __atomic builtins, which operate on plain objects. Include it first.
#ifndef SVC_TESTS_C_ATOMIC_COMPAT_H
#define SVC_TESTS_C_ATOMIC_COMPAT_H

#ifdef __cplusplus
#define _STDATOMIC_H        // gcc's <stdatomic.h>: skip
#define __CLANG_STDATOMIC_H // clang's <stdatomic.h>: skip
#define _Atomic volatile
#define atomic_load(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define atomic_store(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define atomic_fetch_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define atomic_fetch_sub(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_SEQ_CST)
#endif

#endif
