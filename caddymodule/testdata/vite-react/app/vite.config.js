import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// CSP_NONCE_PLACEHOLDER set: Vite writes it as the nonce of every tag it emits and in a
// <meta property="csp-nonce">, from which its preload helper takes the nonce of the <link>s it
// adds for a lazy chunk (html.cspNonce). For `inject_nonce placeholder`.
const placeholder = process.env.CSP_NONCE_PLACEHOLDER

export default defineConfig({
  plugins: [react()],
  html: placeholder ? { cspNonce: placeholder } : {},
  build: {
    rolldownOptions: {
      output: {
        // React in a chunk of its own, as most apps split it: index.html then loads it
        // through a <link rel="modulepreload">.
        codeSplitting: { groups: [{ name: 'vendor', test: /node_modules/ }] },
      },
    },
  },
})
