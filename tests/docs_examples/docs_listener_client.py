# The docs' two programs ("Listeners and Clients") in one, for tests/docs_examples.rs: the
# server is the main process, the client runs in a child process. The docs' port 6000 is 0
# here (the OS picks a free port; the child is given the listener's actual address).
from multiprocessing import Process
from multiprocessing.connection import Listener, Client
from array import array

def client(address):
    with Client(address, authkey=b'secret password') as conn:
        print(conn.recv())                  # => [2.25, None, 'junk', float]

        print(conn.recv_bytes())            # => 'hello'

        arr = array('i', [0, 0, 0, 0, 0])
        print(conn.recv_bytes_into(arr))    # => 8
        print(arr)                          # => array('i', [42, 1729, 0, 0, 0])

if __name__ == '__main__':
    address = ('localhost', 0)     # family is deduced to be 'AF_INET'

    with Listener(address, authkey=b'secret password') as listener:
        p = Process(target=client, args=(listener.address,))
        p.start()
        with listener.accept() as conn:
            print('connection accepted from', listener.last_accepted)

            conn.send([2.25, None, 'junk', float])

            conn.send_bytes(b'hello')

            conn.send_bytes(array('i', [42, 1729]))
        p.join()
