"""Operations tools: CI regression check, published-measurement validation, calibration fits, bench, schemas."""
