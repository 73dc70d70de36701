export const lazy = 'lazy;';
