// Each part of the build that runs adds a word to #out: the entry module (with the vendor
// chunk it imports through a modulepreload), the stylesheet it imports, a style prop React
// sets, a click handled through React's events, and a lazily imported chunk with its own CSS.
import { lazy, Suspense, useEffect, useState } from 'react'

const Lazy = lazy(() => import('./Lazy.jsx'))

function computed(id, prop) {
  const el = document.getElementById(id)
  return el ? getComputedStyle(el)[prop] : ''
}

export default function App() {
  const [marks, setMarks] = useState(['entry;'])
  const [clicks, setClicks] = useState(0)
  const [lazyOn, setLazyOn] = useState(false)
  const mark = (w) => setMarks((m) => (m.includes(w) ? m : [...m, w]))

  useEffect(() => {
    if (computed('root', 'fontWeight') === '700') mark('css;')
    if (computed('styled', 'color') === 'rgb(10, 20, 30)') mark('styleprop;')
    document.getElementById('count').click()
    setLazyOn(true)
  }, [])
  useEffect(() => {
    if (clicks > 0) mark('click;')
  }, [clicks])

  return (
    <main>
      <h1>csp-react-fixture</h1>
      <p id="styled" style={{ color: 'rgb(10, 20, 30)' }}>style prop</p>
      <button id="count" onClick={() => setClicks((c) => c + 1)}>count is {clicks}</button>
      {lazyOn && (
        <Suspense fallback={<p>loading</p>}>
          <Lazy />
          <LazyCheck onStyled={() => mark('lazy;')} />
        </Suspense>
      )}
      <output id="out">{marks.join('')}</output>
    </main>
  )
}

function LazyCheck({ onStyled }) {
  useEffect(() => {
    if (computed('lazy', 'color') === 'rgb(7, 8, 9)') onStyled()
  }, [])
  return null
}
