// <windows.h> for the Windows side of common/: Winsock 2 first, and
// WIN32_LEAN_AND_MEAN so that windows.h does not also pull in the old
// winsock.h, whose declarations clash with winsock2.h's.
#pragma once

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>  // before windows.h

#include <windows.h>
#endif
