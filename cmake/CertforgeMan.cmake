# Man pages from one source: dist/man/NAME.SECTION.scd (scdoc(5) syntax)
# made into roff at build time, into BUILD/man/NAME.SECTION with
# @PROJECT_VERSION@ substituted (cmake/CertforgeScdoc.cmake), and
# installed by cmake/CertforgeInstall.cmake. scdoc is a build dependency
# (the Debian package scdoc, in tools/deps.sh): the roff is not committed,
# so there is no generated copy to fall out of date with its source.
find_program(CF_SCDOC scdoc)
if(NOT CF_SCDOC)
  message(FATAL_ERROR "scdoc not found: the man pages (dist/man/*.scd) are made with it. "
                      "Install the Debian package 'scdoc' (apt-get install scdoc, or tools/deps.sh).")
endif()
set(CF_MAN_PAGES certforge.1 certforge-bench.1 certforged.8 certforged.conf.5 certforge-acme.8
                 certforge-agent.8)
set(CF_MAN_DIR ${PROJECT_BINARY_DIR}/man)
set(cf_man_outputs "")
# rewritten only when the version changes, so that the pages are made again
# then (Makefile generators do not notice a changed command line)
file(CONFIGURE OUTPUT ${CF_MAN_DIR}/version.stamp CONTENT "${PROJECT_VERSION}\n")
foreach(page ${CF_MAN_PAGES})
  set(src ${PROJECT_SOURCE_DIR}/dist/man/${page}.scd)
  add_custom_command(OUTPUT ${CF_MAN_DIR}/${page}
    COMMAND ${CMAKE_COMMAND} -DSCDOC=${CF_SCDOC} -DIN=${src} -DOUT=${CF_MAN_DIR}/${page}
            -DPROJECT_VERSION=${PROJECT_VERSION} -P ${PROJECT_SOURCE_DIR}/cmake/CertforgeScdoc.cmake
    DEPENDS ${src} ${PROJECT_SOURCE_DIR}/cmake/CertforgeScdoc.cmake ${CF_MAN_DIR}/version.stamp
    COMMENT "scdoc: ${page}" VERBATIM)
  list(APPEND cf_man_outputs ${CF_MAN_DIR}/${page})
endforeach()
add_custom_target(man ALL DEPENDS ${cf_man_outputs})
