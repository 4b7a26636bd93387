"""Operations tools: CI regression check, published-measurement validation against bands, calibration fits, bench."""
