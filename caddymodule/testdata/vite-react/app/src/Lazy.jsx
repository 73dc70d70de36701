import './lazy.css'

export default function Lazy() {
  return <p className="lazy" id="lazy">lazy chunk</p>
}
