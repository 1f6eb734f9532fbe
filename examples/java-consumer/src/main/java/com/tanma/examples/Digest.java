package com.tanma.examples;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HexFormat;
import java.util.List;

/** Digests that other consumers (the Python example) compute the same way. */
final class Digest {
  private Digest() {}

  /** Sorted by UTF-8 bytes, i.e. by code point, as Python's {@code sorted} does. */
  static List<String> sortedUtf8(Collection<String> items) {
    List<String> out = new ArrayList<>(items);
    out.sort((a, b) -> Arrays.compareUnsigned(
        a.getBytes(StandardCharsets.UTF_8), b.getBytes(StandardCharsets.UTF_8)));
    return out;
  }

  /** Hex SHA-256 of the lines, each followed by a newline, in UTF-8. */
  static String sha256Lines(List<String> lines) {
    MessageDigest md;
    try {
      md = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
    for (String line : lines) {
      md.update((line + "\n").getBytes(StandardCharsets.UTF_8));
    }
    return HexFormat.of().formatHex(md.digest());
  }
}
