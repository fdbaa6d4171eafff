# `cmake --install BUILD [--prefix P]`: the daemons (sbin), the CLI and the
# bench (bin), libcertforge.so with its headers and certforge.pc, the
# OpenSSL provider (LIBDIR/ossl-modules, OpenSSL's modules folder when
# the prefix is /usr), man pages, systemd units and sysusers.d, bash
# completion, the example config and the example client
# (SHAREDIR/doc/certforge/examples). tests/install/test_install.sh installs
# into a temporary prefix and runs what it installed.
include(GNUInstallDirs)
set(CF_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "where the systemd units go (relative to the prefix, or absolute)")
set(CF_SYSUSERSDIR "lib/sysusers.d" CACHE STRING "where sysusers.d(5) files go")
set(CF_OSSL_MODULESDIR "${CMAKE_INSTALL_LIBDIR}/ossl-modules" CACHE STRING
    "where the OpenSSL provider certforge.so goes")
set(CF_BASH_COMPLETIONDIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" CACHE STRING
    "where the bash completion goes")

foreach(t certforged certforge-acme certforge-agent)
  if(TARGET ${t})
    install(TARGETS ${t} RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
  endif()
endforeach()
foreach(t certforge certforge-bench)
  if(TARGET ${t})
    install(TARGETS ${t} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()

# libcertforge: shared library (soname libcertforge.so.MAJOR), the public
# header and the common/ headers it includes, pkg-config file.
install(TARGETS cf_libcertforge LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/client/certforge.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/certforge)
install(FILES ${PROJECT_SOURCE_DIR}/common/issue.h ${PROJECT_SOURCE_DIR}/common/sigalg.h
              ${PROJECT_SOURCE_DIR}/common/status.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/certforge/common)
# relocatable: paths from the .pc file's own folder, so that an install
# under any --prefix (or DESTDIR) is found through PKG_CONFIG_PATH as is
string(REGEX REPLACE "[^/]+" ".." cf_up "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
set(CF_PC_PREFIX "\${pcfiledir}/${cf_up}")
set(CF_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
set(CF_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
configure_file(${PROJECT_SOURCE_DIR}/dist/certforge.pc.in ${PROJECT_BINARY_DIR}/certforge.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/certforge.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

if(TARGET certforge_provider)
  install(TARGETS certforge_provider LIBRARY DESTINATION ${CF_OSSL_MODULESDIR})
endif()

# Man pages: made from dist/man/*.scd at build time (cmake/CertforgeMan.cmake).
foreach(page ${CF_MAN_PAGES})
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" sect ${page})
  install(FILES ${CF_MAN_DIR}/${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${sect})
endforeach()
# Units name installed paths: made at install time, for the prefix actually
# installed to (cmake --install --prefix P).
set(cf_cfg "")
foreach(unit certforged certforge-acme certforge-agent)
  string(APPEND cf_cfg "configure_file(\"${PROJECT_SOURCE_DIR}/dist/systemd/${unit}.service.in\"
    \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CF_SYSTEMD_UNITDIR}/${unit}.service\" @ONLY)\n")
endforeach()
install(CODE "
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  set(CMAKE_INSTALL_FULL_SBINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}\")
  set(CMAKE_INSTALL_FULL_DATADIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DATADIR}\")
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(CMAKE_INSTALL_FULL_SYSCONFDIR /etc)
  else()
    set(CMAKE_INSTALL_FULL_SYSCONFDIR \"\${CMAKE_INSTALL_PREFIX}/etc\")
  endif()
  message(STATUS \"Installing: systemd units for \${CMAKE_INSTALL_PREFIX}\")
  ${cf_cfg}")
install(FILES ${PROJECT_SOURCE_DIR}/dist/systemd/certforge.sysusers DESTINATION ${CF_SYSUSERSDIR}
        RENAME certforge.conf)

install(FILES ${PROJECT_SOURCE_DIR}/dist/completion/certforge DESTINATION ${CF_BASH_COMPLETIONDIR})
foreach(alias certforged certforge-acme certforge-agent certforge-bench)
  install(CODE "file(CREATE_LINK certforge
    \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CF_BASH_COMPLETIONDIR}/${alias}\" SYMBOLIC)")
endforeach()

install(FILES ${PROJECT_SOURCE_DIR}/docs/examples/certforged.conf
              ${PROJECT_SOURCE_DIR}/docs/examples/certforge-client.c
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/certforge/examples)
