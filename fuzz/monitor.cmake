# monitor.cmake — svc-monitor's fuzz harnesses (included by
# fuzz/CMakeLists.txt when the svcmon_core target exists).
svc_add_fuzzer(fuzz_config LIBS svcmon_core)
svc_add_fuzzer(fuzz_http LIBS svcmon_core)
svc_add_fuzzer(fuzz_stats_json LIBS svcmon_core)
