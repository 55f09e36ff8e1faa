"""Face filters: landmarks, warping, colour, blending and the swap/portrait modes."""
