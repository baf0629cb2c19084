"""tailorlm."""
