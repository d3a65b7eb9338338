# find_package(ps-client): the imported target ps::client (libps_client.so.1
# and its headers in include/ps/).
include(${CMAKE_CURRENT_LIST_DIR}/ps-client-targets.cmake)
