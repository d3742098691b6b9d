# CMake package of numa_mp (installed by tools/install.sh): find_package(numa_mp) gives the imported targets
#   numa_mp::numa_mp          shared library (processes, pools, queues, pipes, sync, shared values, NUMA)
#   numa_mp::numa_mp_static   the same, static
#   numa_mp::manager          the Manager (server + client), shared; links numa_mp::numa_mp
#   numa_mp::manager_static   the same, static; links numa_mp::numa_mp_static
# Paths are relative to this file, so the installed tree can be moved.
cmake_minimum_required(VERSION 3.16)
get_filename_component(_numa_mp_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(numa_mp_VERSION 0.1.0)
find_package(Threads REQUIRED)

if(NOT TARGET numa_mp::numa_mp)
  set(_numa_mp_system numa capnp-json capnp kj rt Threads::Threads)
  add_library(numa_mp::numa_mp SHARED IMPORTED)
  set_target_properties(numa_mp::numa_mp PROPERTIES
    IMPORTED_LOCATION "${_numa_mp_prefix}/lib/libnuma_mp.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_numa_mp_prefix}/include"
    INTERFACE_COMPILE_FEATURES cxx_std_20
    INTERFACE_LINK_LIBRARIES "${_numa_mp_system}")
  add_library(numa_mp::numa_mp_static STATIC IMPORTED)
  set_target_properties(numa_mp::numa_mp_static PROPERTIES
    IMPORTED_LOCATION "${_numa_mp_prefix}/lib/libnuma_mp.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_numa_mp_prefix}/include"
    INTERFACE_COMPILE_FEATURES cxx_std_20
    INTERFACE_LINK_LIBRARIES "${_numa_mp_system}")
  add_library(numa_mp::manager SHARED IMPORTED)
  set_target_properties(numa_mp::manager PROPERTIES
    IMPORTED_LOCATION "${_numa_mp_prefix}/lib/libnuma_mp_manager.so"
    INTERFACE_LINK_LIBRARIES "numa_mp::numa_mp;capnp-rpc;kj-async")
  add_library(numa_mp::manager_static STATIC IMPORTED)
  set_target_properties(numa_mp::manager_static PROPERTIES
    IMPORTED_LOCATION "${_numa_mp_prefix}/lib/libnuma_mp_manager.a"
    INTERFACE_LINK_LIBRARIES "numa_mp::numa_mp_static;capnp-rpc;kj-async")
  unset(_numa_mp_system)
endif()
unset(_numa_mp_prefix)
