// The one compiled copy of stb_image and stb_image_write (Debian's libstb-dev headers), apart from
// io/image.cpp so that the sanitizer builds can leave out checks that fire inside them:
// stb_image_write's JPEG bit writer shifts set bits into an int's sign (UBSan "left shift of
// 671088640 by 8 places"), harmless on every compiler we use and not ours to change. The
// configuration macros must match io/image.cpp's.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#include <stb_image.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
