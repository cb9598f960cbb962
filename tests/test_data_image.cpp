// Decoding (8/16-bit grey, RGB, RGBA PNG and JPEG), broken files, and resizing checked against
// independent computations.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "io/fileutil.h"
#include "io/image.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace cxr::io {
namespace {

using cxr::test::ScratchDir;

// ---- a minimal 16-bit grey PNG encoder (stored deflate blocks), independent of stb --------------
uint32_t crc32(const uint8_t* p, size_t n, uint32_t c = 0xFFFFFFFFu) {
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c;
}
void put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}
void chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> td(type, type + 4);
  td.insert(td.end(), data.begin(), data.end());
  png.insert(png.end(), td.begin(), td.end());
  put32(png, crc32(td.data(), td.size()) ^ 0xFFFFFFFFu);
}
std::vector<uint8_t> png16_grey(const std::vector<uint16_t>& px, int w, int h) {
  std::vector<uint8_t> raw;
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);  // filter: none
    for (int x = 0; x < w; ++x) raw.push_back(px[y * w + x] >> 8), raw.push_back(px[y * w + x] & 0xFF);
  }
  std::vector<uint8_t> z = {0x78, 0x01};
  for (size_t off = 0; off < raw.size(); off += 65535) {
    const size_t n = std::min<size_t>(65535, raw.size() - off);
    z.push_back(off + n == raw.size() ? 1 : 0);
    z.push_back(n & 0xFF), z.push_back(n >> 8), z.push_back(~n & 0xFF), z.push_back((~n >> 8) & 0xFF);
    z.insert(z.end(), raw.begin() + off, raw.begin() + off + n);
  }
  uint32_t a = 1, b = 0;
  for (uint8_t c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  put32(z, (b << 16) | a);
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  put32(ihdr, w), put32(ihdr, h);
  ihdr.insert(ihdr.end(), {16, 0, 0, 0, 0});  // 16-bit, grey
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  return png;
}

std::vector<uint8_t> random_grey(int w, int h, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> v(static_cast<size_t>(w) * h);
  for (auto& x : v) x = static_cast<uint8_t>(g() & 0xFF);
  return v;
}

TEST(DataImage, DecodesPngGreyRgbRgba) {
  ScratchDir dir("img");
  const int w = 37, h = 23;
  auto grey = random_grey(w, h, 1);
  std::vector<uint8_t> rgb(grey.size() * 3), rgba(grey.size() * 4);
  for (size_t i = 0; i < grey.size(); ++i) {
    for (int c = 0; c < 3; ++c) rgb[i * 3 + c] = grey[i], rgba[i * 4 + c] = grey[i];
    rgba[i * 4 + 3] = 255;
  }
  write_png(dir / "g.png", grey.data(), w, h, 1);
  write_png(dir / "c.png", rgb.data(), w, h, 3);
  write_png(dir / "a.png", rgba.data(), w, h, 4);
  for (const char* f : {"g.png", "c.png", "a.png"}) {
    GreyImage img;
    std::string err;
    ASSERT_TRUE(decode_grey(dir / f, &img, &err)) << f << ": " << err;
    EXPECT_EQ(img.width, w);
    EXPECT_EQ(img.height, h);
    EXPECT_EQ(img.pixels, grey) << f;
  }
  // A coloured pixel is converted with BT.601 luma.
  const uint8_t px[3] = {200, 100, 50};
  write_png(dir / "p.png", px, 1, 1, 3);
  GreyImage img;
  std::string err;
  ASSERT_TRUE(decode_grey(dir / "p.png", &img, &err));
  EXPECT_EQ(img.pixels[0], static_cast<uint8_t>(0.299 * 200 + 0.587 * 100 + 0.114 * 50 + 0.5));
}

TEST(DataImage, Decodes16BitPng) {
  ScratchDir dir("img16");
  const int w = 19, h = 11;
  std::vector<uint16_t> px(w * h);
  std::mt19937 g(7);
  for (auto& v : px) v = static_cast<uint16_t>(g() & 0xFFFF);
  px[0] = 0, px[1] = 65535, px[2] = 257 * 100;
  auto bytes = png16_grey(px, w, h);
  cxr::test::write_file(dir / "x.png", std::string(bytes.begin(), bytes.end()));
  GreyImage img;
  std::string err;
  ASSERT_TRUE(decode_grey(dir / "x.png", &img, &err)) << err;
  ASSERT_EQ(img.width, w);
  for (int i = 0; i < w * h; ++i)
    ASSERT_EQ(img.pixels[i], static_cast<uint8_t>(std::lround(px[i] * 255.0 / 65535.0))) << i;
}

TEST(DataImage, DecodesJpeg) {
  ScratchDir dir("jpg");
  std::vector<uint8_t> flat(32 * 32, 128);
  write_jpg(dir / "x.jpg", flat.data(), 32, 32, 1);
  GreyImage img;
  std::string err;
  ASSERT_TRUE(decode_grey(dir / "x.jpg", &img, &err)) << err;
  EXPECT_EQ(img.width, 32);
  for (uint8_t v : img.pixels) EXPECT_NEAR(v, 128, 2);  // JPEG is lossy; a flat image stays within 2
}

// A PNG that declares w x h pixels: a valid IHDR and a token IDAT (nothing should decode it).
std::string png_header_only(uint32_t w, uint32_t h) {
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  auto chunk = [&](const char* type, const std::string& data) {
    return be32(uint32_t(data.size())) + type + data + be32(0);  // stb_image does not check CRCs
  };
  const std::string ihdr = be32(w) + be32(h) + std::string{8, 0, 0, 0, 0};  // 8-bit grey
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) +
         chunk("IDAT", std::string("\x78\x9c\x03\x00", 4)) + chunk("IEND", "");
}

TEST(DataImage, DecompressionBombIsRefusedFromItsHeader) {
  const std::string bomb = png_header_only(20000, 20000);  // 400 M pixels declared in 57 bytes
  GreyImage img;
  std::string err;
  EXPECT_FALSE(decode_grey_memory(reinterpret_cast<const uint8_t*>(bomb.data()), bomb.size(), &img, &err));
  EXPECT_NE(err.find("image of 20000 x 20000 pixels exceeds the limit of 268435456 pixels"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("--max-image-pixels"), std::string::npos) << err;
  // The limit is what the flag sets: a 64 x 64 image passes the default and fails a limit of 1000.
  auto grey = random_grey(64, 64, 5);
  ScratchDir dir("bomb");
  write_png(dir / "ok.png", grey.data(), 64, 64, 1);
  EXPECT_TRUE(decode_grey(dir / "ok.png", &img, &err)) << err;
  set_max_image_pixels(1000);
  EXPECT_FALSE(decode_grey(dir / "ok.png", &img, &err));
  EXPECT_NE(err.find("64 x 64"), std::string::npos) << err;
  set_max_image_pixels(kDefaultMaxImagePixels);
}

// A JPEG whose Huffman table claims more than 256 codes made stb_image 2.27 write past its table
// (found by fuzzing; Note [stb_image's fixes] in io/CMakeLists.txt).
TEST(DataImage, JpegWithAnOverfullHuffmanTableIsRefused) {
  auto grey = random_grey(32, 32, 9);
  ScratchDir dir("jpeg_dht");
  write_jpg(dir / "ok.jpg", grey.data(), 32, 32, 1, 90);
  std::string bytes = cxr::io::read_text_file(dir / "ok.jpg");
  const size_t dht = bytes.find("\xFF\xC4");
  ASSERT_NE(dht, std::string::npos) << "stb_image_write writes its Huffman tables";
  GreyImage img;
  std::string err;
  ASSERT_TRUE(decode_grey_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &img, &err))
      << err;
  for (int i = 0; i < 16; ++i) bytes[dht + 5 + size_t(i)] = char(0x20);  // 16 x 32 = 512 codes
  EXPECT_FALSE(decode_grey_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &img, &err));
  // Without the fix stb_image may still end in "Corrupt JPEG", after writing past its table: the
  // sanitizer build (CI) is where this test fails then (UBSan's bounds check, no recovery).
  EXPECT_EQ(err, "cannot decode: Corrupt JPEG");
}

TEST(DataImage, BrokenFilesGiveReasons) {
  ScratchDir dir("broken");
  auto grey = random_grey(64, 64, 3);
  write_png(dir / "ok.png", grey.data(), 64, 64, 1);
  std::string bytes = cxr::io::read_text_file(dir / "ok.png");
  cxr::test::write_file(dir / "trunc.png", bytes.substr(0, bytes.size() / 2));
  cxr::test::write_file(dir / "empty.png", "");
  cxr::test::write_file(dir / "text.png", "this is not an image\n");
  GreyImage img;
  std::string err;
  EXPECT_FALSE(decode_grey(dir / "trunc.png", &img, &err));
  EXPECT_NE(err.find("cannot decode"), std::string::npos) << err;
  EXPECT_FALSE(decode_grey(dir / "empty.png", &img, &err));
  EXPECT_EQ(err, "empty file");
  EXPECT_FALSE(decode_grey(dir / "text.png", &img, &err));
  EXPECT_NE(err.find("cannot decode"), std::string::npos) << err;
  EXPECT_FALSE(decode_grey(dir / "nonexistent.png", &img, &err));
  EXPECT_EQ(err, "cannot open file");
}

// stb_image 2.27's uncompressed TGA reader ignored a short read: a 2.5 KB file declaring 42470 x 5449
// RGB pixels (found by fuzz_png) came back as an image of uninitialised heap memory. A truncated TGA
// is refused (Note [stb_image's fixes] in io/CMakeLists.txt); a whole one still decodes.
TEST(DataImage, TruncatedTgaIsRefused) {
  const int w = 16, h = 8;
  auto grey = random_grey(w, h, 13);
  std::string tga(18, '\0');
  tga[2] = 2;  // uncompressed true colour
  tga[12] = char(w), tga[14] = char(h), tga[16] = 24;
  tga[17] = 0x20;  // rows stored top to bottom
  for (uint8_t v : grey) tga += std::string(3, char(v));  // B = G = R
  GreyImage img;
  std::string err;
  auto decode = [&](const std::string& b) {
    return decode_grey_memory(reinterpret_cast<const uint8_t*>(b.data()), b.size(), &img, &err);
  };
  ASSERT_TRUE(decode(tga)) << err;
  EXPECT_EQ(img.pixels, grey);
  EXPECT_FALSE(decode(tga.substr(0, tga.size() - 1)));  // one byte short of the last row
  EXPECT_EQ(err, "cannot decode: Corrupt TGA");
  const std::string found = cxr::io::read_text_file(
      cxr::test::source_path("tests/fuzz/corpus/png/regression-stb-tga-truncated.tga"));
  EXPECT_FALSE(decode(found));
  EXPECT_EQ(err, "cannot decode: Corrupt TGA");
}

// A chunk whose declared length runs past the end of the file made stb_image 2.27 grow its IDAT
// buffer to 2 GiB before it found the file too short (found by fuzz_png; Note [PNG chunk lengths] in
// io/image.cpp). Such a PNG is refused, naming the chunk, where it starts, what it declares and what
// the file holds, before any decoder sees it. The exact text is the check: without the fix the file
// reaches stb_image, whose refusal ("cannot decode: Corrupt PNG", or "Out of memory" where the 2 GiB
// cannot be had) differs, and only after the allocation.
TEST(DataImage, PngChunkLongerThanTheFileIsRefusedBeforeDecoding) {
  GreyImage img;
  std::string err;
  // The fuzzer's input (2,269 bytes; its second IDAT declares 1,845,494,713 bytes, 1,072 follow).
  const std::string found = cxr::test::source_path("tests/fuzz/corpus/png/regression-stb-idat-length-past-end.png");
  EXPECT_FALSE(decode_grey(found, &img, &err));
  EXPECT_EQ(err,
            "cannot decode: PNG chunk 'IDAT' at byte 1189 declares 1845494713 bytes of data, but the file ends "
            "1072 bytes later (a damaged or truncated PNG)");

  // The same on a valid PNG: it decodes (both paths), then with its IDAT length raised it does not.
  auto grey = random_grey(40, 30, 11);
  ScratchDir dir("png_chunk_len");
  write_png(dir / "ok.png", grey.data(), 40, 30, 1);
  const std::string ok = cxr::io::read_text_file(dir / "ok.png");
  auto decode = [&](const std::string& bytes, bool fast) {
    return decode_grey_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &img, &err, fast);
  };
  for (bool fast : {true, false}) {
    ASSERT_TRUE(decode(ok, fast)) << err;
    EXPECT_EQ(img.pixels, grey);
  }
  const size_t idat = ok.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  const size_t at = idat - 4;  // the chunk starts with its length
  const uint32_t len = (uint32_t(uint8_t(ok[at])) << 24) | (uint32_t(uint8_t(ok[at + 1])) << 16) |
                       (uint32_t(uint8_t(ok[at + 2])) << 8) | uint32_t(uint8_t(ok[at + 3]));
  const size_t left = ok.size() - at - 8;  // data, CRC and the IEND chunk (12 bytes)
  ASSERT_EQ(left, len + 4 + 12) << "stb_image_write writes one IDAT, then IEND";
  auto with_length = [&](uint32_t n) {
    std::string b = ok;
    for (int k = 0; k < 4; ++k) b[at + k] = char(n >> (24 - 8 * k));
    return b;
  };
  // One byte past the end is refused; exactly to the end is left to the decoders (which refuse it
  // for the missing IEND, as before).
  for (bool fast : {true, false}) {
    EXPECT_FALSE(decode(with_length(uint32_t(left) + 1), fast));
    EXPECT_EQ(err, "cannot decode: PNG chunk 'IDAT' at byte " + std::to_string(at) + " declares " +
                       std::to_string(left + 1) + " bytes of data, but the file ends " + std::to_string(left) +
                       " bytes later (a damaged or truncated PNG)");
    EXPECT_FALSE(decode(with_length(uint32_t(left)), fast));
    EXPECT_EQ(err.find("declares"), std::string::npos) << err;
    EXPECT_FALSE(decode(with_length(0x80000000u), fast));
    EXPECT_EQ(err, "cannot decode: PNG chunk 'IDAT' at byte " + std::to_string(at) +
                       " declares 2147483648 bytes of data, but a PNG chunk holds at most 2147483647 (a damaged or "
                       "truncated PNG)");
  }
  // A chunk type that is not text is shown escaped.
  std::string odd = with_length(0xFFFFFFFFu);
  odd[idat] = '\x01';
  EXPECT_FALSE(decode(odd, true));
  EXPECT_NE(err.find("PNG chunk '\\x01DAT' at byte"), std::string::npos) << err;
  // What stb_image accepted before still decodes: bytes after IEND are not walked, and an IEND cut
  // before its CRC is read by stb_image as it was.
  for (const std::string& b : {ok + std::string("\x7F\xFF\xFF\xFFIDAT", 8), ok.substr(0, ok.size() - 4)})
    for (bool fast : {true, false}) {
      ASSERT_TRUE(decode(b, fast)) << err;
      EXPECT_EQ(img.pixels, grey);
    }
}

// An 8-bit PNG whose rows are filtered with types 0-4 (none, sub, up, average, paeth), applied here
// from the specification, in stored deflate blocks: every filter, independent of stb. Rows 2p and
// 2p + 1 get (q % 5, q / 5 % 5) with q = p + 11 * shift, so shifts 0-4 of a 23-row image give every
// ordered pair of types on consecutive rows (the grey path unfilters rows in pairs).
int paeth_ref(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return pa <= pb && pa <= pc ? a : (pb <= pc ? b : c);
}
std::vector<uint8_t> png8_filtered(const std::vector<uint8_t>& px, int w, int h, int ch, int shift) {
  const int colour = ch == 1 ? 0 : ch == 2 ? 4 : ch == 3 ? 2 : 6;
  const int n = w * ch;
  std::vector<uint8_t> raw;
  for (int y = 0; y < h; ++y) {
    const int q = y / 2 + 11 * shift;
    const int f = y % 2 == 0 ? q % 5 : q / 5 % 5;
    raw.push_back(static_cast<uint8_t>(f));
    for (int k = 0; k < n; ++k) {
      const int x = px[y * n + k];
      const int a = k >= ch ? px[y * n + k - ch] : 0, b = y ? px[(y - 1) * n + k] : 0;
      const int c = k >= ch && y ? px[(y - 1) * n + k - ch] : 0;
      const int pred = f == 0 ? 0 : f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : paeth_ref(a, b, c);
      raw.push_back(static_cast<uint8_t>((x - pred) & 0xFF));
    }
  }
  std::vector<uint8_t> z = {0x78, 0x01};
  for (size_t off = 0; off < raw.size(); off += 65535) {
    const size_t m = std::min<size_t>(65535, raw.size() - off);
    z.push_back(off + m == raw.size() ? 1 : 0);
    z.push_back(m & 0xFF), z.push_back(m >> 8), z.push_back(~m & 0xFF), z.push_back((~m >> 8) & 0xFF);
    z.insert(z.end(), raw.begin() + off, raw.begin() + off + m);
  }
  uint32_t s1 = 1, s2 = 0;
  for (uint8_t c : raw) s1 = (s1 + c) % 65521, s2 = (s2 + s1) % 65521;
  put32(z, (s2 << 16) | s1);
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  put32(ihdr, w), put32(ihdr, h);
  ihdr.insert(ihdr.end(), {8, static_cast<uint8_t>(colour), 0, 0, 0});
  chunk(png, "IHDR", ihdr);
  // The image data split over two IDAT chunks, as encoders may do.
  const size_t half = z.size() / 2;
  chunk(png, "IDAT", std::vector<uint8_t>(z.begin(), z.begin() + half));
  chunk(png, "IDAT", std::vector<uint8_t>(z.begin() + half, z.end()));
  chunk(png, "IEND", {});
  return png;
}

// The PNG fast path (own chunk parsing and unfiltering, stb's inflate) against the source pixels and
// against stb_image's full decoder: every filter type, every 8-bit colour type, odd sizes, then the
// real NIH images when ../shared/data is present. Truncation falls back to stb's error
// (BrokenFilesGiveReasons).
TEST(DataImage, PngFastPathMatchesStb) {
  std::mt19937 g(21);
  for (int ch = 1; ch <= 4; ++ch)
    for (int shift = 0; shift < 5; ++shift) {
      const int w = 37 + shift, h = 23;
      std::vector<uint8_t> px(static_cast<size_t>(w) * h * ch);
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          // Smooth with noise; colour images mostly with R = G = B (as NIH's), some pixels not.
          const uint8_t v = static_cast<uint8_t>((x * 5 + y * 3 + g() % 9) & 255);
          for (int c = 0; c < ch; ++c) px[(y * w + x) * ch + c] = v;
          if (ch >= 3 && g() % 4 == 0) px[(y * w + x) * ch + 1] = static_cast<uint8_t>(g());
          if (ch == 2 || ch == 4)
            px[(y * w + x) * ch + ch - 1] = static_cast<uint8_t>(g());  // alpha, ignored
        }
      const std::vector<uint8_t> png = png8_filtered(px, w, h, ch, shift);
      GreyImage fast, stb;
      std::string err;
      ASSERT_TRUE(decode_png8(png.data(), png.size(), &fast)) << "the fast path declined";
      ASSERT_TRUE(decode_grey_memory(png.data(), png.size(), &stb, &err, false)) << err;
      ASSERT_EQ(fast.width, w);
      ASSERT_EQ(fast.height, h);
      ASSERT_EQ(fast.pixels, stb.pixels) << "channels " << ch << " shift " << shift;
      if (ch <= 2) {
        for (int i = 0; i < w * h; ++i) ASSERT_EQ(fast.pixels[i], px[i * ch]) << i;
      }
    }
  int real = 0;
  for (const char* rel : {"data/nih-1024", "data/nih-sample-64/images", "data/nih-320/images"}) {
    const std::string dir = cxr::test::shared_path(rel);
    if (dir.empty()) continue;
    int k = 0;
    for (auto& e : std::filesystem::directory_iterator(dir)) {
      if (e.path().extension() != ".png" || k++ >= 12) continue;
      const std::string bytes = read_text_file(e.path().string());
      const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
      GreyImage fast, stb;
      std::string err;
      ASSERT_TRUE(decode_png8(p, bytes.size(), &fast)) << e.path() << ": the fast path declined";
      ASSERT_TRUE(decode_grey_memory(p, bytes.size(), &stb, &err, false)) << e.path() << ": " << err;
      ASSERT_EQ(fast.width, stb.width);
      ASSERT_EQ(fast.pixels, stb.pixels) << e.path();
      ++real;
    }
  }
  if (real == 0)
    std::printf("note: ../shared/data absent: the fast PNG path was checked on synthetic PNGs only\n");
}

TEST(DataResize, BoxIntegerFactorIsBlockMean) {
  const int k = 4, out = 40, in = out * k;
  auto src = random_grey(in, in, 11);
  std::vector<uint8_t> dst(out * out);
  resize_grey(dst.data(), out, out, src.data(), in, in, ResizeFilter::Box);
  for (int y = 0; y < out; ++y)
    for (int x = 0; x < out; ++x) {
      double s = 0;
      for (int dy = 0; dy < k; ++dy)
        for (int dx = 0; dx < k; ++dx) s += src[(y * k + dy) * in + x * k + dx];
      // Tolerance 1: stb rounds in float, the mean here is exact.
      ASSERT_NEAR(dst[y * out + x], s / (k * k), 1.0) << x << "," << y;
    }
}

TEST(DataResize, ReducingGapIsExactBlockMeanThenFilter) {
  const int in = 203, out = 50;  // scale 4.06, gap 1.5 -> 2x2 blocks, a partial block at the edge
  auto src = random_grey(in, in, 12);
  std::vector<uint8_t> red;
  int rw = 0, rh = 0;
  reduce_box(&red, &rw, &rh, src.data(), in, in, 2);
  ASSERT_EQ(rw, 102);
  for (int y = 0; y < rh; ++y)
    for (int x = 0; x < rw; ++x) {
      double s = 0;
      int n = 0;
      for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx)
          if (2 * y + dy < in && 2 * x + dx < in) s += src[(2 * y + dy) * in + 2 * x + dx], ++n;
      ASSERT_EQ(red[y * rw + x], static_cast<uint8_t>(std::floor(s / n + 0.5))) << x << "," << y;
    }
  std::vector<uint8_t> a(out * out), b(out * out);
  resize_grey(a.data(), out, out, src.data(), in, in, ResizeFilter::Mitchell, 1.5);
  resize_grey(b.data(), out, out, red.data(), rw, rh, ResizeFilter::Mitchell);
  EXPECT_EQ(a, b);
}

// Mitchell-Netravali B = C = 1/3.
double mitchell(double x) {
  x = std::fabs(x);
  const double B = 1.0 / 3, C = 1.0 / 3;
  if (x < 1) return ((12 - 9 * B - 6 * C) * x * x * x + (-18 + 12 * B + 6 * C) * x * x + (6 - 2 * B)) / 6;
  if (x < 2)
    return ((-B - 6 * C) * x * x * x + (6 * B + 30 * C) * x * x + (-12 * B - 48 * C) * x + (8 * B + 24 * C)) /
           6;
  return 0;
}

// Reference 1-D resampling: output pixel j is centred at input coordinate (j + 0.5) n / out_n - 0.5;
// when downsampling the kernel is widened by n / out_n (antialiasing); weights normalised; edges
// clamped.
std::vector<double> resample_1d(const std::vector<double>& in, int out_n) {
  const int n = static_cast<int>(in.size());
  const double widen = std::max(1.0, static_cast<double>(n) / out_n);
  std::vector<double> out(out_n);
  for (int j = 0; j < out_n; ++j) {
    const double center = (j + 0.5) * n / out_n - 0.5;
    const double support = 2.0 * widen;
    double s = 0, ws = 0;
    for (int i = static_cast<int>(std::floor(center - support));
         i <= static_cast<int>(std::ceil(center + support)); ++i) {
      const double w = mitchell((i - center) / widen);
      s += w * in[std::clamp(i, 0, n - 1)];
      ws += w;
    }
    out[j] = s / ws;
  }
  return out;
}

TEST(DataResize, MitchellMatchesReferenceAndAntialiases) {
  // Non-integer factors (250 -> 64; 160 -> 50 is 1024 -> 320's 3.2), non-square, and upsampling.
  for (auto [in_w, in_h, out_w, out_h] :
       {std::array<int, 4>{250, 250, 64, 64}, {160, 96, 50, 30}, {41, 200, 90, 64}}) {
    auto src = random_grey(in_w, in_h, 5 + in_w);
    std::vector<uint8_t> dst(out_w * out_h);
    resize_grey(dst.data(), out_w, out_h, src.data(), in_w, in_h, ResizeFilter::Mitchell);
    // Separable reference: rows, then columns, in double.
    std::vector<std::vector<double>> rows(in_h);
    for (int y = 0; y < in_h; ++y)
      rows[y] = resample_1d(std::vector<double>(src.begin() + y * in_w, src.begin() + (y + 1) * in_w), out_w);
    double max_err = 0;
    for (int x = 0; x < out_w; ++x) {
      std::vector<double> col(in_h);
      for (int y = 0; y < in_h; ++y) col[y] = rows[y][x];
      auto c = resample_1d(col, out_h);
      for (int y = 0; y < out_h; ++y) {
        const double ref = std::clamp(c[y], 0.0, 255.0);
        max_err = std::max(max_err, std::fabs(dst[y * out_w + x] - ref));
      }
    }
    // 0.5 from rounding to uint8, 0.01 for float weights and accumulation (~1e-4 here).
    EXPECT_LT(max_err, 0.51) << in_w << "x" << in_h << " -> " << out_w << "x" << out_h;
  }
  // Antialiasing: a one-pixel checkerboard shrunk 4x becomes flat grey, not an aliased pattern.
  std::vector<uint8_t> cb(256 * 256);
  for (int y = 0; y < 256; ++y)
    for (int x = 0; x < 256; ++x) cb[y * 256 + x] = ((x + y) & 1) ? 255 : 0;
  std::vector<uint8_t> small(64 * 64);
  resize_grey(small.data(), 64, 64, cb.data(), 256, 256);
  // Tolerance 8: the Mitchell filter passes a few percent at the input Nyquist frequency (point
  // sampling would give 0 or 255, i.e. an error of 127).
  for (uint8_t v : small) ASSERT_NEAR(v, 127.5, 8.0);
}

}  // namespace
}  // namespace cxr::io
