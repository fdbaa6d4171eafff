# cf_add_test(NAME SOURCES a.c b.c LIBS x y [LABELS l] [TIMEOUT s] [TIMING])
# A CUnit (or plain) test executable registered with CTest. Exit code 77
# means "skipped: a prerequisite is missing" and is reported as such.
# TIMING: the suite also has timing suites (tests/support/cf_test.h), run
# as the CTest test NAME_timing (`NAME --timing`), labelled "timing" and
# not "concurrency": tools/test.sh runs them in the plain stage only.
function(cf_add_test name)
  if(NOT BUILD_TESTING)
    return()
  endif()
  cmake_parse_arguments(T "TIMING" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} cf_testsupport)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "CF_BUILD_DIR=${PROJECT_BINARY_DIR};CF_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
  if(T_TIMING)
    set(labels ${T_LABELS})
    list(REMOVE_ITEM labels concurrency)
    list(APPEND labels timing)
    add_test(NAME ${name}_timing COMMAND ${name} --timing)
    set_tests_properties(${name}_timing PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT ${T_TIMEOUT}
      LABELS "${labels}"
      ENVIRONMENT "CF_BUILD_DIR=${PROJECT_BINARY_DIR};CF_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  endif()
endfunction()

# cf_add_fuzzer(NAME SOURCES a.c LIBS x CORPUS dir): a libFuzzer target, built
# only with CF_FUZZ=ON (clang). tools/fuzz.sh runs it.
function(cf_add_fuzzer name)
  if(NOT CF_FUZZ)
    return()
  endif()
  cmake_parse_arguments(F "" "CORPUS" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${F_SOURCES})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE ${F_LIBS})
endfunction()
