# cmake -DSRC=DIR -DOUT=FILE -P GitRevision.cmake
# Writes FILE with `#define CF_GIT_REV "<short hash>[-dirty]"` ("unknown"
# outside a git checkout). Run at every build (bench/CMakeLists.txt), and
# the file is rewritten only when the revision changed, so nothing
# recompiles for nothing: benchmark JSON names the code it measured.
execute_process(COMMAND git -C "${SRC}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE rev OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR rev STREQUAL "")
  set(rev "unknown")
else()
  execute_process(COMMAND git -C "${SRC}" diff --quiet HEAD -- RESULT_VARIABLE dirty ERROR_QUIET)
  if(NOT dirty EQUAL 0)
    string(APPEND rev "-dirty")
  endif()
endif()
set(text "#define CF_GIT_REV \"${rev}\"\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
